import { RateDecision, RateLimitRule, ScopeCounts, decide, tokenCost, tokenDelta } from '../../../rate-limits/domain/rate-decision';
import { elapsedInWindow, windowIndex } from '../../../rate-limits/domain/sliding-window';
import { RateLimiterStore } from '../../ports/rate-limiter-store';

/** One scope's counters as of window `index`. */
interface ScopeWindows {
  index: number;
  requests: { previous: number; current: number };
  tokens: { previous: number; current: number };
}

/**
 * The counters in this process (every store but redis): each replica limits what it admits itself,
 * so N replicas behind a load balancer let up to N × the limit through. Admission is synchronous
 * between awaits, hence atomic. Scopes idle for two windows are dropped once per window.
 */
export class MemoryRateLimiter extends RateLimiterStore {
  private readonly scopes = new Map<string, ScopeWindows>();
  private sweptAt = 0;

  admit(rules: RateLimitRule[], tokens: number, now = Date.now()): Promise<RateDecision> {
    const index = windowIndex(now);
    const elapsed = elapsedInWindow(now);
    const cost = tokenCost(tokens);
    this.sweep(index);
    const states = rules.map((rule) => this.state(rule.scope, index));
    // Decided on the uncounted state, a refusal names the refusing rule; with none, every rule has room.
    const refused = decide(rules, states, cost, elapsed, false);
    if (refused.scope !== null) return Promise.resolve(refused);
    states.forEach((s, i) => {
      s.requests.current += 1;
      s.tokens.current += cost;
      this.scopes.set(rules[i].scope, s);
    });
    return Promise.resolve(decide(rules, states, cost, elapsed, true));
  }

  adjustTokens(rules: RateLimitRule[], delta: number, admittedAt: number, now = Date.now()): Promise<void> {
    const index = windowIndex(now);
    const admittedIn = windowIndex(admittedAt);
    const change = tokenDelta(delta);
    if (change === 0 || admittedIn > index || admittedIn < index - 1) return Promise.resolve();
    for (const rule of rules) {
      const s = this.scopes.get(rule.scope);
      if (s === undefined) continue;
      roll(s, index);
      const which = admittedIn === index ? 'current' : 'previous';
      s.tokens[which] = Math.max(0, s.tokens[which] + change);
    }
    return Promise.resolve();
  }

  /** Scopes holding counters (for tests: idle ones are dropped). */
  get size(): number {
    return this.scopes.size;
  }

  /** The scope's counters rolled to window `index` (not stored until something is counted). */
  private state(scope: string, index: number): ScopeWindows & ScopeCounts {
    const s = this.scopes.get(scope) ?? { index, requests: { previous: 0, current: 0 }, tokens: { previous: 0, current: 0 } };
    return roll(s, index);
  }

  private sweep(index: number): void {
    if (index <= this.sweptAt) return;
    this.sweptAt = index;
    for (const [scope, s] of this.scopes) if (s.index < index - 1) this.scopes.delete(scope);
  }
}

function roll(s: ScopeWindows, index: number): ScopeWindows {
  // A later window than `index` (the clock stepped back): keep it rather than lose what it counted.
  if (s.index >= index) return s;
  const wasPrevious = s.index === index - 1;
  s.requests = { previous: wasPrevious ? s.requests.current : 0, current: 0 };
  s.tokens = { previous: wasPrevious ? s.tokens.current : 0, current: 0 };
  s.index = index;
  return s;
}
