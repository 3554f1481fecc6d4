import { RateDecision, RateLimitRule } from '../../rate-limits/domain/rate-decision';

export type { RateDecision, RateLimitKind, RateLimitRule } from '../../rate-limits/domain/rate-decision';

/**
 * Port: the sliding-window counters of the rate-limited scopes (domain/sliding-window.ts). Redis keeps
 * them shared by every replica; the in-process adapter keeps them per replica.
 */
export abstract class RateLimiterStore {
  /**
   * Checks every rule and, only when all pass, counts the request (+1) and its `tokens` in every
   * rule's current window: all or nothing, atomically with respect to concurrent admissions.
   * `rules` must not be empty and must name each scope once.
   */
  abstract admit(rules: RateLimitRule[], tokens: number, now?: number): Promise<RateDecision>;

  /**
   * Corrects the tokens counted at admission by `delta` (negative when the usage was below the
   * estimate) in the window the request was admitted in, if that window is still the current or
   * the previous one; counts never go below 0.
   */
  abstract adjustTokens(rules: RateLimitRule[], delta: number, admittedAt: number, now?: number): Promise<void>;

  /** Releases connections (shutdown). */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
