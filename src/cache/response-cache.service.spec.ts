import { Logger } from '@nestjs/common';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { loadAppConfig } from '../app-config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryChangeFeed } from '../storage/backends/memory/memory-change-feed';
import { ChangeEvent, ChangeFeed } from '../storage/ports/change-feed';
import { CachePurgeFilter, CachedResponse, matchesPurge } from './domain/cached-response';
import { ResponseCacheService } from './response-cache.service';
import { ResponseCacheStore } from '../storage/ports/response-cache-store';

/** A stand-in for the shared L2 (the redis adapter has its own suite against a real server). */
class MapStore extends ResponseCacheStore {
  readonly entries = new Map<string, CachedResponse>();
  failing = false;

  async get(hash: string): Promise<CachedResponse | null> {
    this.check();
    return this.entries.get(hash) ?? null;
  }

  async set(hash: string, entry: CachedResponse): Promise<void> {
    this.check();
    this.entries.set(hash, entry);
  }

  async purge(filter: CachePurgeFilter): Promise<number> {
    this.check();
    let purged = 0;
    for (const [hash, entry] of this.entries) if (matchesPurge(entry, filter) && this.entries.delete(hash)) purged++;
    return purged;
  }

  async close(): Promise<void> {}

  private check(): void {
    if (this.failing) throw new Error('connect ECONNREFUSED 127.0.0.1:6390');
  }
}

function config(env: Record<string, string> = {}) {
  return loadAppConfig({ PROXY_CACHE_TTL_SECS: '60', PROXY_CACHE_MAX_ENTRY_BYTES: '1000', ...env }).cache;
}

function entry(overrides: Partial<CachedResponse> = {}, bodyBytes = 100): CachedResponse {
  const now = Date.now();
  return {
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: Buffer.alloc(bodyBytes, 'x'),
    usage: { promptTokens: 3, completionTokens: 5, cachedTokens: 0, totalTokens: 8 },
    keyId: 'k1',
    tenantId: 'acme',
    model: 'gpt-4o-mini',
    storedAt: now,
    expiresAt: now + 60_000,
    ...overrides,
  };
}

interface Replica {
  cache: ResponseCacheService;
  metrics: MetricsService;
}

function replica(l2: ResponseCacheStore | null, changes: ChangeFeed = new MemoryChangeFeed(), env: Record<string, string> = {}): Replica {
  const metrics = new MetricsService();
  const cache = new ResponseCacheService(config(env), changes, metrics, l2);
  cache.onModuleInit();
  return { cache, metrics };
}

async function counter(metrics: MetricsService, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  const found = metric.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value));
  return found?.value ?? 0;
}

const nextTick = () => new Promise((resolve) => setImmediate(resolve));

describe('ResponseCacheService', () => {
  const replicas: Replica[] = [];
  const track = (r: Replica) => (replicas.push(r), r);

  afterEach(async () => {
    for (const r of replicas.splice(0)) await r.cache.onApplicationShutdown();
    jest.restoreAllMocks();
  });

  it("takes the key's own TTL when it has one (0 turns caching off), else PROXY_CACHE_TTL_SECS", () => {
    const { cache } = track(replica(null));
    expect(cache.ttlMsFor({ cache: { ttlSecs: null } })).toBe(60_000);
    expect(cache.ttlMsFor({ cache: { ttlSecs: 5 } })).toBe(5_000);
    expect(cache.ttlMsFor({ cache: { ttlSecs: 0 } })).toBe(0);
    const off = track(replica(null, undefined, { PROXY_CACHE_TTL_SECS: '0' }));
    expect(off.cache.ttlMsFor({ cache: { ttlSecs: null } })).toBe(0);
    expect(off.cache.ttlMsFor({ cache: { ttlSecs: 30 } })).toBe(30_000);
  });

  it('serves from L1, and counts hits and misses', async () => {
    const { cache, metrics } = track(replica(null));
    expect(await cache.lookup('h')).toBeNull();
    const stored = entry();
    expect(cache.store('h', stored)).toBe(true);
    expect(await cache.lookup('h')).toEqual({ entry: stored, level: 'l1' });
    expect(await counter(metrics, 'ditto_proxy_cache_lookups_total', { result: 'hit_l1' })).toBe(1);
    expect(await counter(metrics, 'ditto_proxy_cache_lookups_total', { result: 'miss' })).toBe(1);
    expect(await counter(metrics, 'ditto_proxy_cache_stores_total')).toBe(1);
    expect(await counter(metrics, 'ditto_proxy_cache_l1_bytes')).toBeGreaterThan(100);
  });

  it("shares entries through L2: another replica's first hit is L2, and fills its L1", async () => {
    const l2 = new MapStore();
    const a = track(replica(l2));
    const b = track(replica(l2));
    const stored = entry();
    a.cache.store('h', stored);
    await nextTick();
    expect(l2.entries.get('h')).toBe(stored);
    expect(await b.cache.lookup('h')).toEqual({ entry: stored, level: 'l2' });
    l2.entries.clear();
    expect(await b.cache.lookup('h')).toEqual({ entry: stored, level: 'l1' });
    expect(await counter(b.metrics, 'ditto_proxy_cache_lookups_total', { result: 'hit_l2' })).toBe(1);
  });

  it('refuses a body above PROXY_CACHE_MAX_ENTRY_BYTES, and an entry already expired, at both levels', async () => {
    const l2 = new MapStore();
    const { cache, metrics } = track(replica(l2));
    expect(cache.store('big', entry({}, 1001))).toBe(false);
    expect(cache.store('old', entry({ expiresAt: Date.now() - 1 }))).toBe(false);
    expect(cache.store('fits', entry({}, 1000))).toBe(true);
    await nextTick();
    expect([...l2.entries.keys()]).toEqual(['fits']);
    expect(await cache.lookup('big')).toBeNull();
    expect(await counter(metrics, 'ditto_proxy_cache_stores_total')).toBe(1);
  });

  it('answers a miss when L2 fails, counting every failure and logging them at most once a minute', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const l2 = new MapStore();
    const { cache, metrics } = track(replica(l2));
    l2.failing = true;
    expect(await cache.lookup('a')).toBeNull();
    expect(await cache.lookup('b')).toBeNull();
    expect(cache.store('c', entry())).toBe(true);
    await nextTick();
    expect(await cache.lookup('c')).toMatchObject({ level: 'l1' });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0][0]).toContain('ECONNREFUSED');
    expect(await counter(metrics, 'ditto_storage_errors_total', { operation: 'proxy_cache_l2_get' })).toBe(2);
    expect(await counter(metrics, 'ditto_storage_errors_total', { operation: 'proxy_cache_l2_set' })).toBe(1);
    expect(await counter(metrics, 'ditto_proxy_cache_lookups_total', { result: 'miss' })).toBe(2);
  });

  it('purges L1 and L2, counts both, and makes the other replicas drop their L1 entries', async () => {
    const l2 = new MapStore();
    const feed = new MemoryChangeFeed();
    const a = track(replica(l2, feed));
    const b = track(replica(l2, feed));
    a.cache.store('k1', entry({ keyId: 'k1' }));
    a.cache.store('k2', entry({ keyId: 'k2' }));
    await nextTick();
    await b.cache.lookup('k1'); // now in b's L1 too
    await b.cache.lookup('k2');

    expect(await a.cache.purge({ keyId: 'k1', model: undefined })).toBe(2); // a's L1 + L2
    await nextTick();
    expect(await b.cache.lookup('k1')).toBeNull();
    expect(await b.cache.lookup('k2')).toMatchObject({ level: 'l1' });

    expect(await b.cache.purge({})).toBe(2); // b's L1 + L2 (a's L1 goes by the feed)
    await nextTick();
    expect(await a.cache.lookup('k2')).toBeNull();
  });

  it('announces a purge with the JSON of its filter, and ignores events that are not valid filters', async () => {
    const published: ChangeEvent[] = [];
    const feed = new MemoryChangeFeed();
    const publish = feed.publish.bind(feed);
    jest.spyOn(feed, 'publish').mockImplementation((event) => (published.push(event), publish(event)));
    const { cache } = track(replica(null, feed));
    await cache.purge({ model: 'gpt-4o-mini' });
    expect(published).toEqual([{ entity: 'proxy_cache', id: '{"model":"gpt-4o-mini"}' }]);
    await nextTick(); // this replica hears its own purge too

    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    cache.store('h', entry());
    await feed.publish({ entity: 'proxy_cache', id: 'not json' });
    await feed.publish({ entity: 'virtual_key', id: '{}' });
    await nextTick();
    expect(await cache.lookup('h')).not.toBeNull();
  });

  it('rejects with storage_unavailable when L2 cannot be purged, after clearing L1', async () => {
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const l2 = new MapStore();
    const { cache } = track(replica(l2));
    cache.store('h', entry());
    await nextTick();
    l2.failing = true;
    const failure = await cache.purge({}).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(GatewayError);
    expect((failure as GatewayError).code).toBe(ErrorCode.StorageUnavailable);
    expect(await cache.lookup('h')).toBeNull();
  });
});
