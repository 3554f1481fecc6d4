import { WINDOW_MS } from '../../../rate-limits/domain/sliding-window';
import { MemoryRateLimiter } from './memory-rate-limiter';
import { RateLimitRule } from '../../ports/rate-limiter-store';

/** Some moment, on a second. */
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
    // The 3 share one second (latest at T0 + 2): a slot frees when that second is a window old.
    expect(decisions[3].retryAfterMs).toBe(WINDOW_MS - 1);
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

  it('corrects the bucket of the admission while it still counts, and leaves it alone after', async () => {
    const limiter = new MemoryRateLimiter();
    const rules = [{ scope: 'key:k', rpm: null, tpm: 100 }];
    await limiter.admit(rules, 100, T0);
    expect((await limiter.admit(rules, 10, T0 + 30_000)).ok).toBe(false);
    await limiter.adjustTokens(rules, -60, T0, T0 + 30_001);
    expect(await limiter.admit(rules, 10, T0 + 30_002)).toMatchObject({ ok: true, remainingTokens: 50 });
    // A window after the admission its bucket no longer counts: nothing left to correct.
    await limiter.adjustTokens(rules, 1000, T0, T0 + WINDOW_MS);
    expect(await limiter.admit(rules, 90, T0 + WINDOW_MS)).toMatchObject({ ok: true, remainingTokens: 0 });
  });

  it('never admits more than the limit in any 60 s span, and a refused client that waits retry-after gets in', async () => {
    const limiter = new MemoryRateLimiter();
    const rules = [{ scope: 'key:k', rpm: 10, tpm: 300 }];
    let seed = 7;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const admitted: Array<{ at: number; tokens: number }> = [];
    let now = T0;
    for (let i = 0; i < 3000; i++) {
      // Bursts and pauses over about ten minutes.
      now += random(10) === 0 ? random(20_000) : random(150);
      const tokens = 1 + random(60);
      const decision = await limiter.admit(rules, tokens, now);
      if (decision.ok) {
        admitted.push({ at: now, tokens });
        continue;
      }
      expect(decision.retryAfterMs).toBeLessThanOrEqual(WINDOW_MS);
      // Honest: at now + retry-after it fits (nothing else was admitted meanwhile), one ms earlier it does not.
      const probe = new MemoryRateLimiter();
      for (const a of admitted.filter((x) => x.at > now - 2 * WINDOW_MS)) await probe.admit(rules, a.tokens, a.at);
      expect((await probe.admit(rules, tokens, now + decision.retryAfterMs - 1)).ok).toBe(false);
      expect((await probe.admit(rules, tokens, now + decision.retryAfterMs)).ok).toBe(true);
    }
    expect(admitted.length).toBeGreaterThan(50);
    for (const { at } of admitted) {
      const span = admitted.filter((x) => x.at > at - WINDOW_MS && x.at <= at);
      expect(span.length).toBeLessThanOrEqual(10);
      expect(span.reduce((sum, x) => sum + x.tokens, 0)).toBeLessThanOrEqual(300);
    }
  });

  it('drops scopes with nothing left counting (looked at once per window)', async () => {
    const limiter = new MemoryRateLimiter();
    await limiter.admit([{ scope: 'key:a', rpm: 5, tpm: null }], 0, T0);
    await limiter.admit([{ scope: 'key:b', rpm: 5, tpm: null }], 0, T0 + WINDOW_MS / 2);
    expect(limiter.size).toBe(2);
    await limiter.admit([{ scope: 'key:b', rpm: 5, tpm: null }], 0, T0 + WINDOW_MS);
    expect(limiter.size).toBe(1);
  });
});
