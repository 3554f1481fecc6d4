import { Bucket, RateKind, fits, remaining, retryAfterMs } from './sliding-window';

/** The rpm/tpm limits that apply to one scope (null = no limit of that kind). */
export interface RateLimitRule {
  scope: string;
  rpm: number | null;
  tpm: number | null;
}

export type RateLimitKind = RateKind;

/** The answer to one admission. */
export interface RateDecision {
  ok: boolean;
  /** The refusing scope (null when admitted). */
  scope: string | null;
  /** Which of its limits refused: rpm (`requests`) or tpm (`tokens`); null when admitted. */
  kind: RateLimitKind | null;
  /** Ms until the request would fit (0 when admitted); Infinity when it never can (tokens > tpm). */
  retryAfterMs: number;
  /**
   * The tightest limit of each kind over all rules and what it has left (after this request when
   * admitted); on a refusal, the refused kind shows the refusing rule's. Null: no rule limits it.
   */
  limitRequests: number | null;
  remainingRequests: number | null;
  limitTokens: number | null;
  remainingTokens: number | null;
}

/** The decision when no rule applies (the limiter was not asked). */
export const UNLIMITED: RateDecision = Object.freeze({
  ok: true,
  scope: null,
  kind: null,
  retryAfterMs: 0,
  limitRequests: null,
  remainingRequests: null,
  limitTokens: null,
  remainingTokens: null,
});

/** A request's tokens as counted: whole, never negative (a missing estimate counts 0). */
export function tokenCost(tokens: number): number {
  return Number.isFinite(tokens) && tokens > 0 ? Math.ceil(tokens) : 0;
}

/** A token correction as applied: whole, 0 (nothing to do) when not a number. */
export function tokenDelta(delta: number): number {
  return Number.isFinite(delta) ? Math.round(delta) : 0;
}

/** One rule's counters: its buckets (requests and tokens per second), as the limiter read them. */
export type ScopeCounts = readonly Bucket[];

/**
 * Builds the decision from each rule's counters as the limiter saw them: after counting the request
 * when `admitted`, before (nothing counted) when not. Limiters check with the same `fits`, so the
 * rules this finds over their limit are exactly those that refused.
 */
export function decide(rules: RateLimitRule[], counts: ScopeCounts[], tokens: number, now: number, admitted: boolean): RateDecision {
  const d: RateDecision = { ...UNLIMITED, ok: admitted };
  let refusedLeft = 0;
  let refusedLimit = 0;
  rules.forEach((rule, i) => {
    for (const kind of ['requests', 'tokens'] as const) {
      const limit = kind === 'requests' ? rule.rpm : rule.tpm;
      if (limit === null) continue;
      const buckets = counts[i];
      const left = remaining(buckets, kind, limit, now);
      if (kind === 'requests' && (d.remainingRequests === null || left < d.remainingRequests)) [d.limitRequests, d.remainingRequests] = [limit, left];
      if (kind === 'tokens' && (d.remainingTokens === null || left < d.remainingTokens)) [d.limitTokens, d.remainingTokens] = [limit, left];
      const cost = kind === 'requests' ? 1 : tokens;
      if (admitted || fits(buckets, kind, limit, cost, now)) continue;
      // Every refusing limit must have room again before the request fits: the longest wait decides.
      const wait = retryAfterMs(buckets, kind, limit, cost, now);
      if (d.scope === null || wait > d.retryAfterMs) [d.scope, d.kind, d.retryAfterMs, refusedLimit, refusedLeft] = [rule.scope, kind, wait, limit, left];
    }
  });
  if (d.kind === 'requests') [d.limitRequests, d.remainingRequests] = [refusedLimit, refusedLeft];
  if (d.kind === 'tokens') [d.limitTokens, d.remainingTokens] = [refusedLimit, refusedLeft];
  return d;
}
