import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadAppConfig } from '../../src/app-config';
import { CachedResponse } from '../../src/cache/domain/cached-response';
import { RedisResponseCacheStore, openRedisResponseCacheStore } from '../../src/storage/backends/redis/redis-response-cache.store';
import { ResponseCacheService } from '../../src/cache/response-cache.service';
import { MetricsService } from '../../src/metrics/metrics.service';
import { MemoryChangeFeed } from '../../src/storage/backends/memory/memory-change-feed';
import { testStorageOptions } from './options';

/** The proxy cache's L2 against a real redis/valkey (TEST_REDIS_URL, default the local server). */
const url = testStorageOptions().redis.url;

function entry(overrides: Partial<CachedResponse> = {}): CachedResponse {
  const now = Date.now();
  return {
    status: 200,
    headers: { 'content-type': 'application/json', 'openai-model': 'gpt-4o-mini-2024-07-18' },
    body: Buffer.from('{"id":"chatcmpl-1","object":"chat.completion"}'),
    usage: { promptTokens: 12, completionTokens: 34, cachedTokens: 2, totalTokens: 46 },
    keyId: 'k1',
    tenantId: 'acme',
    model: 'gpt-4o-mini',
    storedAt: now,
    expiresAt: now + 60_000,
    ...overrides,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('RedisResponseCacheStore (redis)', () => {
  let prefix: string;
  let store: RedisResponseCacheStore;
  let raw: Redis;

  beforeAll(() => {
    raw = new Redis(url);
  });

  afterAll(() => raw.quit());

  beforeEach(async () => {
    prefix = `ditto-test-${randomBytes(6).toString('hex')}:cache`;
    store = await openRedisResponseCacheStore({ url, prefix, timeoutMs: 2000, onError: () => undefined });
  });

  /** Deletes every key under the prefix. The server is shared with other runs: never FLUSHDB. */
  afterEach(async () => {
    await store.close();
    const stream = raw.scanStream({ match: `${prefix}:*`, count: 1000 });
    for await (const keys of stream as AsyncIterable<string[]>) if (keys.length > 0) await raw.unlink(...keys);
  });

  it('round-trips an entry with a binary body byte for byte', async () => {
    const body = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(4096), Buffer.from([0xff, 0xfe, 0x00])]);
    const stored = entry({ body, model: null, tenantId: null, usage: null });
    await store.set('h1', stored);
    const found = await store.get('h1');
    expect(found).toEqual(stored);
    expect(Buffer.isBuffer(found?.body)).toBe(true);
    expect(found?.body.equals(body)).toBe(true);
    expect(await store.get('other')).toBeNull();
  });

  it('expires an entry at its expiresAt, and stores nothing already expired', async () => {
    await store.set('short', entry({ expiresAt: Date.now() + 200 }));
    await store.set('long', entry());
    await store.set('past', entry({ expiresAt: Date.now() - 1 }));
    expect(await store.get('short')).not.toBeNull();
    const ttl = await raw.pttl(`${prefix}:e:long`);
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(await raw.exists(`${prefix}:e:past`)).toBe(0);
    await sleep(350);
    expect(await store.get('short')).toBeNull();
    expect(await store.get('long')).not.toBeNull();
  });

  it('purges by key id, by model, by both, or everything, counting what it deleted', async () => {
    await store.set('k1-m1', entry({ keyId: 'k1', model: 'm1' }));
    await store.set('k1-m2', entry({ keyId: 'k1', model: 'm2' }));
    await store.set('k2-m1', entry({ keyId: 'k2', model: 'm1' }));
    await store.set('k2-none', entry({ keyId: 'k2', model: null }));
    await store.set('k3-m2', entry({ keyId: 'k3', model: 'm2' }));
    await store.set('k4-m3', entry({ keyId: 'k4', model: 'm3' }));

    expect(await store.purge({ keyId: 'k1', model: 'm2' })).toBe(1);
    expect(await store.get('k1-m2')).toBeNull();
    expect(await store.get('k1-m1')).not.toBeNull();

    expect(await store.purge({ model: 'm1' })).toBe(2);
    expect(await store.get('k1-m1')).toBeNull();
    expect(await store.get('k2-m1')).toBeNull();

    expect(await store.purge({ keyId: 'k2' })).toBe(1);
    expect(await store.get('k2-none')).toBeNull();
    expect(await store.purge({ keyId: 'k2' })).toBe(0);

    expect(await store.purge({})).toBe(2);
    expect(await store.get('k3-m2')).toBeNull();
    expect(await store.get('k4-m3')).toBeNull();
    expect(await raw.exists(`${prefix}:idx:all`)).toBe(0);
  });

  it("does not purge an entry for a key it no longer belongs to (same hash stored again by another key)", async () => {
    await store.set('shared', entry({ keyId: 'k1', model: 'm1' }));
    await store.set('shared', entry({ keyId: 'k2', model: 'm2' }));
    expect(await store.purge({ keyId: 'k1' })).toBe(0);
    expect(await store.purge({ model: 'm1' })).toBe(0);
    expect(await store.get('shared')).toMatchObject({ keyId: 'k2' });
    expect(await store.purge({ keyId: 'k2' })).toBe(1);
  });

  it('purges across many batches, keeping the entries that match only part of the filter', async () => {
    const count = 1300;
    await Promise.all(Array.from({ length: count }, (_, i) => store.set(`h${i}`, entry({ keyId: 'k1', model: i % 2 ? 'odd' : 'even' }))));
    expect(await store.purge({ keyId: 'k1', model: 'even' })).toBe(count / 2);
    expect(await store.get('h0')).toBeNull();
    expect(await store.get('h1')).not.toBeNull();
    expect(await store.get(`h${count - 1}`)).not.toBeNull();
    expect(await store.purge({ keyId: 'k1' })).toBe(count / 2);
    expect(await raw.exists(`${prefix}:idx:key:k1`)).toBe(0);
  });

  it('keeps its index sets no longer-lived than their entries', async () => {
    await store.set('a', entry({ expiresAt: Date.now() + 5_000 }));
    await store.set('b', entry({ expiresAt: Date.now() + 20_000 }));
    for (const index of ['all', 'key:k1', 'model:gpt-4o-mini']) {
      const ttl = await raw.pttl(`${prefix}:idx:${index}`);
      expect(ttl).toBeGreaterThan(15_000);
      expect(ttl).toBeLessThanOrEqual(20_000);
    }
    await store.set('c', entry({ expiresAt: Date.now() + 100 }));
    await sleep(200);
    await store.set('d', entry({ expiresAt: Date.now() + 1_000 })); // trims the expired member 'c'
    expect(await raw.zrange(`${prefix}:idx:all`, 0, -1)).toEqual(['d', 'a', 'b']);
  });

  it('fails fast rather than stalling when the server cannot be reached', async () => {
    const started = Date.now();
    const down = await openRedisResponseCacheStore({ url: 'redis://127.0.0.1:1', prefix, timeoutMs: 300, onError: () => undefined });
    try {
      await expect(down.get('h')).rejects.toThrow();
      await expect(down.set('h', entry())).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await down.close();
    }
  });

  it('lets a replica serve what another stored (an L2 hit, then an L1 hit)', async () => {
    const config = loadAppConfig({ PROXY_CACHE_TTL_SECS: '60' });
    const other = await openRedisResponseCacheStore({ url, prefix, timeoutMs: 2000, onError: () => undefined });
    const a = new ResponseCacheService(config.cache, new MemoryChangeFeed(), new MetricsService(), store);
    const b = new ResponseCacheService(config.cache, new MemoryChangeFeed(), new MetricsService(), other);
    try {
      const stored = entry({ body: randomBytes(1024) });
      expect(a.store('h', stored)).toBe(true);
      await sleep(50); // the L2 write is in the background
      expect(await b.lookup('h')).toEqual({ entry: stored, level: 'l2' });
      expect(await b.lookup('h')).toEqual({ entry: stored, level: 'l1' });
    } finally {
      await other.close();
    }
  });
});
