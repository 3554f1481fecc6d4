import { RateDecision, RateLimitRule, decide, tokenCost, tokenDelta } from '../../../rate-limits/domain/rate-decision';
import { Bucket, WINDOW_MS, bucketIndex, live } from '../../../rate-limits/domain/sliding-window';
import { RateLimiterStore } from '../../ports/rate-limiter-store';

/**
 * The counters in this process (every store but redis): each replica limits what it admits itself,
 * so N replicas behind a load balancer let up to N × the limit through. Admission is synchronous
 * between awaits, hence atomic. A scope keeps its live buckets (domain/sliding-window.ts), oldest
 * first; scopes with none left are dropped once per window.
 */
export class MemoryRateLimiter extends RateLimiterStore {
  private readonly scopes = new Map<string, Bucket[]>();
  private sweptAt = 0;

  admit(rules: RateLimitRule[], tokens: number, now = Date.now()): Promise<RateDecision> {
    const cost = tokenCost(tokens);
    this.sweep(now);
    const states = rules.map((rule) => this.buckets(rule.scope, now));
    // Decided on the uncounted state, a refusal names the refusing rule; with none, every rule has room.
    const refused = decide(rules, states, cost, now, false);
    if (refused.scope !== null) return Promise.resolve(refused);
    states.forEach((buckets, i) => {
      count(buckets, now, cost);
      this.scopes.set(rules[i].scope, buckets);
    });
    return Promise.resolve(decide(rules, states, cost, now, true));
  }

  adjustTokens(rules: RateLimitRule[], delta: number, admittedAt: number, now = Date.now()): Promise<void> {
    const change = tokenDelta(delta);
    if (change === 0) return Promise.resolve();
    const index = bucketIndex(admittedAt);
    for (const rule of rules) {
      const bucket = this.scopes.get(rule.scope)?.find((b) => b.index === index);
      if (bucket !== undefined && live(bucket, now)) bucket.tokens = Math.max(0, bucket.tokens + change);
    }
    return Promise.resolve();
  }

  /** Scopes holding counters (for tests: idle ones are dropped). */
  get size(): number {
    return this.scopes.size;
  }

  /** The scope's live buckets (not stored until something is counted). */
  private buckets(scope: string, now: number): Bucket[] {
    const buckets = this.scopes.get(scope);
    if (buckets === undefined) return [];
    let dead = 0;
    while (dead < buckets.length && !live(buckets[dead], now)) dead++;
    if (dead > 0) buckets.splice(0, dead);
    return buckets;
  }

  private sweep(now: number): void {
    if (now - this.sweptAt < WINDOW_MS) return;
    this.sweptAt = now;
    for (const [scope, buckets] of this.scopes) if (!buckets.some((b) => live(b, now))) this.scopes.delete(scope);
  }
}

/** Counts an admission at `now` in its bucket (the newest one when the clock stepped back). */
function count(buckets: Bucket[], now: number, tokens: number): void {
  const newest = buckets[buckets.length - 1];
  if (newest !== undefined && newest.index >= bucketIndex(now)) {
    newest.requests += 1;
    newest.tokens += tokens;
    newest.last = Math.max(newest.last, now);
  } else {
    buckets.push({ index: bucketIndex(now), requests: 1, tokens, last: now });
  }
}
