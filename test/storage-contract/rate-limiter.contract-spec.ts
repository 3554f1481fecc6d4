import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { WINDOW_MS } from '../../src/rate-limits/domain/sliding-window';
import { MemoryRateLimiter } from '../../src/storage/backends/memory/memory-rate-limiter';
import { RateLimitRule, RateLimiterStore } from '../../src/storage/ports/rate-limiter-store';
import { RedisRateLimiter } from '../../src/storage/backends/redis/redis-rate-limiter';
import { testStorageOptions } from './options';

const REDIS_URL = testStorageOptions().redis.url;
/** Some moment, on a second; every test picks its own scopes, so they do not share counters. */
const T0 = 29_000_000 * WINDOW_MS + 10_000;

let scopeSeq = 0;
const scope = (type = 'key') => `${type}:s${++scopeSeq}`;

interface LimiterTarget {
  name: string;
  /** Two limiters over the same counters (two replicas, for redis two connections). */
  open(): Promise<{ a: RateLimiterStore; b: RateLimiterStore }>;
  teardown(): Promise<void>;
}

/** What every RateLimiterStore must do, whatever keeps the counters. */
function describeRateLimiterContract(target: LimiterTarget): void {
  describe(`RateLimiterStore contract: ${target.name}`, () => {
    let a: RateLimiterStore;
    let b: RateLimiterStore;

    beforeAll(async () => ({ a, b } = await target.open()));
    afterAll(() => target.teardown());

    it('admits up to rpm, refuses the next with the scope and retry-after, and admits again when that has passed', async () => {
      const rules: RateLimitRule[] = [{ scope: scope(), rpm: 3, tpm: null }];
      const decisions = [];
      for (let i = 0; i < 4; i++) decisions.push(await a.admit(rules, 10, T0 + i));
      expect(decisions.map((d) => [d.ok, d.remainingRequests])).toEqual([[true, 2], [true, 1], [true, 0], [false, 0]]);
      expect(decisions[3]).toMatchObject({ scope: rules[0].scope, kind: 'requests', limitRequests: 3, limitTokens: null });
      // The 3 share one second (latest at T0 + 2): a slot frees a window after that, never later.
      expect(decisions[3].retryAfterMs).toBe(WINDOW_MS - 1);
      const retryAt = T0 + 3 + decisions[3].retryAfterMs;
      expect((await a.admit(rules, 10, retryAt - 1)).ok).toBe(false);
      expect((await a.admit(rules, 10, retryAt)).ok).toBe(true);
    });

    it('is all or nothing across rules', async () => {
      const key = { scope: scope(), rpm: 10, tpm: 1000 };
      const tenant = { scope: scope('tenant'), rpm: 1, tpm: null };
      expect((await a.admit([key, tenant], 100, T0)).ok).toBe(true);
      expect(await a.admit([key, tenant], 100, T0 + 1)).toMatchObject({ ok: false, scope: tenant.scope, kind: 'requests' });
      expect(await a.admit([key], 100, T0 + 2)).toMatchObject({ ok: true, remainingRequests: 8, remainingTokens: 800 });
    });

    it('refuses by tpm, and says when a request can never fit', async () => {
      const rules = [{ scope: scope(), rpm: null, tpm: 100 }];
      expect((await a.admit(rules, 70, T0)).ok).toBe(true);
      const refused = await a.admit(rules, 40, T0 + 1);
      expect(refused).toMatchObject({ ok: false, kind: 'tokens', limitTokens: 100, remainingTokens: 30 });
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(await a.admit(rules, 101, T0 + 2)).toMatchObject({ ok: false, kind: 'tokens', retryAfterMs: Infinity });
    });

    it('corrects the tokens of the admission window down and up, never below 0, as seen by the other replica', async () => {
      const rules = [{ scope: scope(), rpm: null, tpm: 100 }];
      await a.admit(rules, 80, T0);
      await a.adjustTokens(rules, -50, T0, T0 + 5);
      expect(await b.admit(rules, 60, T0 + 6)).toMatchObject({ ok: true, remainingTokens: 10 });
      await b.adjustTokens(rules, 20, T0 + 6, T0 + 7);
      expect(await a.admit(rules, 1, T0 + 8)).toMatchObject({ ok: false, remainingTokens: 0 });
      await a.adjustTokens(rules, -10_000, T0, T0 + 9);
      expect(await b.admit(rules, 100, T0 + 10)).toMatchObject({ ok: true, remainingTokens: 0 });
    });

    it('corrects the bucket of the admission while it still counts, and leaves it alone after', async () => {
      const rules = [{ scope: scope(), rpm: null, tpm: 100 }];
      await a.admit(rules, 100, T0);
      expect((await b.admit(rules, 10, T0 + 30_000)).ok).toBe(false);
      await a.adjustTokens(rules, -60, T0, T0 + 30_001);
      expect(await b.admit(rules, 10, T0 + 30_002)).toMatchObject({ ok: true, remainingTokens: 50 });
      await a.adjustTokens(rules, 1000, T0, T0 + WINDOW_MS);
      expect(await b.admit(rules, 90, T0 + WINDOW_MS)).toMatchObject({ ok: true, remainingTokens: 0 });
    });

    it('never admits more than the limit in any 60 s span through two replicas; retry-after is an honest wait of at most the window', async () => {
      const rules = [{ scope: scope(), rpm: 10, tpm: 300 }];
      let seed = 11;
      const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
      const admitted: Array<{ at: number; tokens: number }> = [];
      let now = T0;
      let honest = 0;
      for (let i = 0; i < 600; i++) {
        now += random(10) === 0 ? random(20_000) : random(300);
        const tokens = 1 + random(60);
        const decision = await (i % 2 === 0 ? a : b).admit(rules, tokens, now);
        if (decision.ok) {
          admitted.push({ at: now, tokens });
          continue;
        }
        expect(decision.retryAfterMs).toBeLessThanOrEqual(WINDOW_MS);
        // Now and then, the refused client waits exactly retry-after and gets in (nothing else was admitted meanwhile).
        if (random(8) === 0) {
          now += decision.retryAfterMs;
          expect((await (i % 2 === 0 ? b : a).admit(rules, tokens, now)).ok).toBe(true);
          admitted.push({ at: now, tokens });
          honest++;
        }
      }
      expect(honest).toBeGreaterThan(3);
      for (const { at } of admitted) {
        const span = admitted.filter((x) => x.at > at - WINDOW_MS && x.at <= at);
        expect(span.length).toBeLessThanOrEqual(10);
        expect(span.reduce((sum, x) => sum + x.tokens, 0)).toBeLessThanOrEqual(300);
      }
    });

    it('admits exactly rpm of 200 concurrent requests sent through two replicas', async () => {
      const rules = [
        { scope: scope(), rpm: 60, tpm: null },
        { scope: scope('tenant'), rpm: 1000, tpm: 1_000_000 },
      ];
      const decisions = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).admit(rules, 5, T0 + (i % 7))));
      expect(decisions.filter((d) => d.ok)).toHaveLength(60);
      // The refused ones counted nowhere: the tenant saw exactly the 60.
      expect(await a.admit([rules[1]], 5, T0 + 10)).toMatchObject({ remainingRequests: 1000 - 61, remainingTokens: 1_000_000 - 61 * 5 });
    });
  });
}

async function deletePrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    const stream = redis.scanStream({ match: `${prefix}:*`, count: 1000 });
    for await (const keys of stream as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.unlink(...keys);
    }
  } finally {
    redis.disconnect();
  }
}

describeRateLimiterContract({
  name: 'memory (one replica)',
  open: async () => {
    const limiter = new MemoryRateLimiter();
    return { a: limiter, b: limiter };
  },
  teardown: async () => undefined,
});

const redisPrefix = `ditto-test-${randomBytes(6).toString('hex')}`;
const connections: Redis[] = [];

describeRateLimiterContract({
  name: 'redis (two connections)',
  open: async () => {
    const [one, two] = [new Redis(REDIS_URL), new Redis(REDIS_URL, { enableAutoPipelining: true })];
    connections.push(one, two);
    return { a: new RedisRateLimiter(one, redisPrefix), b: new RedisRateLimiter(two, redisPrefix) };
  },
  teardown: async () => {
    for (const connection of connections.splice(0)) connection.disconnect();
    await deletePrefix(redisPrefix);
  },
});

describe('RedisRateLimiter', () => {
  const prefix = `ditto-test-${randomBytes(6).toString('hex')}`;
  let redis: Redis;
  let limiter: RedisRateLimiter;

  beforeAll(() => {
    redis = new Redis(REDIS_URL, { enableAutoPipelining: true });
    limiter = new RedisRateLimiter(redis, prefix);
  });

  afterAll(async () => {
    redis.disconnect();
    await deletePrefix(prefix);
  });

  it('sends one script call per admission and per correction, whatever the number of scopes', async () => {
    const rules = [
      { scope: scope(), rpm: 100, tpm: 10_000 },
      { scope: scope('tenant'), rpm: 100, tpm: null },
      { scope: scope('project'), rpm: null, tpm: 10_000 },
      { scope: scope('user'), rpm: 100, tpm: 10_000 },
    ];
    // The first call of each script may load it (EVALSHA → NOSCRIPT → EVAL).
    await limiter.admit(rules, 1, T0);
    await limiter.adjustTokens(rules, 1, T0, T0);
    const sent = jest.spyOn(redis, 'sendCommand');
    for (let i = 0; i < 10; i++) await limiter.admit(rules, 10, T0 + i);
    expect(sent.mock.calls.map(([command]) => command.name)).toEqual(Array(10).fill('evalsha'));
    sent.mockClear();
    await limiter.adjustTokens(rules, -5, T0, T0 + 20);
    expect(sent.mock.calls.map(([command]) => command.name)).toEqual(['evalsha']);
    sent.mockRestore();
  });

  it('keeps one hash per scope, `<prefix>:rlb:<scope>`, a field per second, expiring within two windows', async () => {
    const rules = [{ scope: 'tenant:ttl', rpm: 5, tpm: null }];
    const now = Date.now();
    await limiter.admit(rules, 7, now);
    await limiter.admit(rules, 2, now);
    const counter = `${prefix}:rlb:tenant:ttl`;
    expect(await redis.hgetall(counter)).toEqual({ [String(Math.floor(now / 1000))]: `2:9:${now}` });
    const ttl = await redis.pttl(counter);
    expect(ttl).toBeGreaterThan(WINDOW_MS);
    expect(ttl).toBeLessThanOrEqual(2 * WINDOW_MS);
    // A second that no longer counts is deleted by the next admission.
    await limiter.admit(rules, 1, now + WINDOW_MS);
    expect(Object.keys(await redis.hgetall(counter))).toEqual([String(Math.floor((now + WINDOW_MS) / 1000))]);
  });

  it('counts nothing on a refusal', async () => {
    const rules = [{ scope: 'tenant:none', rpm: 1, tpm: null }];
    await limiter.admit(rules, 3, T0);
    const counter = `${prefix}:rlb:tenant:none`;
    expect((await limiter.admit(rules, 3, T0 + 1)).ok).toBe(false);
    expect(await redis.hgetall(counter)).toEqual({ [String(T0 / 1000)]: `1:3:${T0}` });
  });
});
