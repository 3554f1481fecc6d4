import { WINDOW_MS } from '../../../rate-limits/domain/sliding-window';
import { MemoryRateLimiter } from './memory-rate-limiter';
import { RateLimitRule } from '../../ports/rate-limiter-store';

/** A moment 10 s into some window. */
const T0 = 1_000 * WINDOW_MS + 10_000;

describe('MemoryRateLimiter', () => {
  it('admits up to rpm, then refuses with the refusing scope, retry-after and nothing left', async () => {
    const limiter = new MemoryRateLimiter();
    const rules: RateLimitRule[] = [{ scope: 'key:k', rpm: 3, tpm: null }];
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await limiter.admit(rules, 10, T0 + i));
    expect(decisions.map((d) => d.ok)).toEqual([true, true, true, false]);
    expect(decisions.map((d) => d.remainingRequests)).toEqual([2, 1, 0, 0]);
    expect(decisions[0]).toMatchObject({ scope: null, kind: null, limitRequests: 3, limitTokens: null, remainingTokens: null });
    expect(decisions[3]).toMatchObject({ ok: false, scope: 'key:k', kind: 'requests', limitRequests: 3 });
    // 3 in this window: the next one starts in 50 s, where 3 × (W − t)/W + 1 ≤ 3 after t = 20 s.
    expect(decisions[3].retryAfterMs).toBe(50_000 - 3 + 20_000);
    const retryAt = T0 + 3 + decisions[3].retryAfterMs;
    expect((await limiter.admit(rules, 10, retryAt - 1)).ok).toBe(false);
    expect((await limiter.admit(rules, 10, retryAt)).ok).toBe(true);
  });

  it('is all or nothing across rules: a refusal counts in none of them', async () => {
    const limiter = new MemoryRateLimiter();
    const key = { scope: 'key:k', rpm: 10, tpm: 1000 };
    const tenant = { scope: 'tenant:t', rpm: 1, tpm: null };
    expect((await limiter.admit([key, tenant], 100, T0)).ok).toBe(true);
    const refused = await limiter.admit([key, tenant], 100, T0 + 1);
    expect(refused).toMatchObject({ ok: false, scope: 'tenant:t', kind: 'requests', limitRequests: 1, remainingRequests: 0 });
    // key:k still has only the first request and its tokens counted.
    const alone = await limiter.admit([key], 100, T0 + 2);
    expect(alone).toMatchObject({ ok: true, remainingRequests: 8, remainingTokens: 800 });
  });

  it('reports the tightest limit of each kind over the rules', async () => {
    const limiter = new MemoryRateLimiter();
    const decision = await limiter.admit(
      [
        { scope: 'key:k', rpm: 100, tpm: 500 },
        { scope: 'tenant:t', rpm: 5, tpm: null },
        { scope: 'project:t/p', rpm: null, tpm: 10_000 },
      ],
      50,
      T0,
    );
    expect(decision).toMatchObject({ ok: true, limitRequests: 5, remainingRequests: 4, limitTokens: 500, remainingTokens: 450 });
  });

  it('refuses by tokens per minute, and says a request above the tpm can never fit', async () => {
    const limiter = new MemoryRateLimiter();
    const rules = [{ scope: 'key:k', rpm: null, tpm: 100 }];
    expect((await limiter.admit(rules, 70, T0)).ok).toBe(true);
    const refused = await limiter.admit(rules, 40, T0 + 1);
    expect(refused).toMatchObject({ ok: false, scope: 'key:k', kind: 'tokens', limitTokens: 100, remainingTokens: 30 });
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(Number.isFinite(refused.retryAfterMs)).toBe(true);
    expect((await limiter.admit(rules, 30, T0 + 2)).ok).toBe(true);
    const never = await limiter.admit(rules, 101, T0 + 3);
    expect(never).toMatchObject({ ok: false, kind: 'tokens', retryAfterMs: Infinity });
  });

  it('corrects the tokens of the admission window down and up, never below 0', async () => {
    const limiter = new MemoryRateLimiter();
    const rules = [{ scope: 'key:k', rpm: null, tpm: 100 }];
    await limiter.admit(rules, 80, T0);
    await limiter.adjustTokens(rules, -50, T0, T0 + 5);
    expect(await limiter.admit(rules, 60, T0 + 6)).toMatchObject({ ok: true, remainingTokens: 10 });
    await limiter.adjustTokens(rules, 20, T0 + 6, T0 + 7);
    expect(await limiter.admit(rules, 1, T0 + 8)).toMatchObject({ ok: false, remainingTokens: 0 });
    await limiter.adjustTokens(rules, -10_000, T0, T0 + 9);
    expect(await limiter.admit(rules, 100, T0 + 10)).toMatchObject({ ok: true, remainingTokens: 0 });
  });

  it('corrects the previous window when the request ended after the boundary, and forgets older ones', async () => {
    const limiter = new MemoryRateLimiter();
    const rules = [{ scope: 'key:k', rpm: null, tpm: 100 }];
    const boundary = (Math.floor(T0 / WINDOW_MS) + 1) * WINDOW_MS;
    await limiter.admit(rules, 100, boundary - 1);
    // Just after the boundary the previous window still weighs ~100 %.
    expect((await limiter.admit(rules, 10, boundary)).ok).toBe(false);
    await limiter.adjustTokens(rules, -60, boundary - 1, boundary + 1);
    expect(await limiter.admit(rules, 10, boundary + 2)).toMatchObject({ ok: true, remainingTokens: 50 });
    // Admitted two windows ago: nothing left to correct (the 10 of the window after it now weigh in full).
    await limiter.adjustTokens(rules, 1000, boundary - 1, boundary + WINDOW_MS);
    expect(await limiter.admit(rules, 90, boundary + WINDOW_MS)).toMatchObject({ ok: true, remainingTokens: 0 });
  });

  it('drops scopes idle for two windows', async () => {
    const limiter = new MemoryRateLimiter();
    await limiter.admit([{ scope: 'key:a', rpm: 5, tpm: null }], 0, T0);
    await limiter.admit([{ scope: 'key:b', rpm: 5, tpm: null }], 0, T0 + WINDOW_MS);
    expect(limiter.size).toBe(2);
    await limiter.admit([{ scope: 'key:b', rpm: 5, tpm: null }], 0, T0 + 2 * WINDOW_MS);
    expect(limiter.size).toBe(1);
  });
});
