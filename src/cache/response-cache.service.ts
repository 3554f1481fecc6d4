import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Counter } from 'prom-client';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import type { ConfigType } from '@nestjs/config';
import { cacheConfig } from './cache.config';
import { MetricsService } from '../metrics/metrics.service';
import { ChangeEvent, ChangeFeed } from '../storage/ports/change-feed';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { CachePurgeFilter, CachedResponse } from './domain/cached-response';
import { MemoryLru } from './memory-lru';
import { ResponseCacheStore } from '../storage/ports/response-cache-store';

/** Change feed entity of a purge; its id is the JSON of the filter. */
export const PROXY_CACHE_ENTITY = 'proxy_cache';
/** L2 failures are logged at most this often (each is counted in ditto_storage_errors_total). */
const L2_ERROR_LOG_INTERVAL_MS = 60_000;

export type CacheLevel = 'l1' | 'l2';
type LookupResult = 'hit_l1' | 'hit_l2' | 'miss';

/**
 * The proxy's response cache: an in-process LRU (L1) in front of an optional shared redis (L2). The
 * L2 only ever costs a request a miss: its failures are counted and logged, never thrown. A purge
 * clears both levels here and tells the other replicas, over the change feed, to clear their L1.
 */
@Injectable()
export class ResponseCacheService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(ResponseCacheService.name);
  private readonly l1: MemoryLru;
  private readonly lookups: Counter<'result'>;
  private readonly stores: Counter;
  private unsubscribe: (() => void) | null = null;
  /** Bumped by every purge: an L2 read that started before one must not put back in L1 what it removed. */
  private purges = 0;
  private lastL2ErrorLog = 0;
  private suppressedL2Errors = 0;

  constructor(
    @Inject(cacheConfig.KEY) private readonly config: ConfigType<typeof cacheConfig>,
    private readonly changes: ChangeFeed,
    private readonly metrics: MetricsService,
    @Inject(ResponseCacheStore) private readonly l2: ResponseCacheStore | null,
  ) {
    this.l1 = new MemoryLru(config.maxEntries, config.maxBytes);
    this.lookups = metrics.counter('ditto_proxy_cache_lookups_total', 'Proxy cache lookups, by result', ['result']);
    for (const result of ['hit_l1', 'hit_l2', 'miss'] as const) this.lookups.inc({ result }, 0);
    this.stores = metrics.counter('ditto_proxy_cache_stores_total', 'Responses stored in the proxy cache');
    metrics.gauge('ditto_proxy_cache_l1_bytes', 'Bytes held by the in-process proxy cache', [], (gauge) => gauge.set(this.l1.stats().bytes));
  }

  onModuleInit(): void {
    this.unsubscribe = this.changes.subscribe((event) => this.onChange(event));
  }

  async onApplicationShutdown(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = null;
    await this.l2?.close();
  }

  /** How long a response for this key is kept: its own cache.ttl_secs, else PROXY_CACHE_TTL_SECS; 0 = not cached. */
  ttlMsFor(key: Pick<VirtualKey, 'cache'>): number {
    return (key.cache.ttlSecs ?? this.config.ttlSecs) * 1000;
  }

  /** The live entry for a request hash: L1 first, then L2 (whose hit is copied into L1). */
  async lookup(hash: string): Promise<{ entry: CachedResponse; level: CacheLevel } | null> {
    const local = this.l1.get(hash);
    if (local) return this.hit(local, 'l1');
    if (this.l2) {
      const purges = this.purges;
      try {
        const shared = await this.l2.get(hash);
        if (shared && shared.expiresAt > Date.now()) {
          if (purges === this.purges) this.l1.set(hash, shared);
          return this.hit(shared, 'l2');
        }
      } catch (error) {
        this.l2Failed('get', error);
      }
    }
    this.count('miss');
    return null;
  }

  /**
   * Stores a response in L1 at once and in L2 in the background (a failure there is logged, not
   * thrown). False when it is not cached: body above PROXY_CACHE_MAX_ENTRY_BYTES, or already expired.
   */
  store(hash: string, entry: CachedResponse): boolean {
    if (entry.body.length > this.config.maxEntryBytes || entry.expiresAt <= Date.now()) return false;
    const local = this.l1.set(hash, entry);
    if (!local && !this.l2) return false;
    this.stores.inc();
    this.l2?.set(hash, entry).catch((error: unknown) => this.l2Failed('set', error));
    return true;
  }

  /**
   * Removes the matching entries (all when the filter is empty) from this replica's L1 and from L2,
   * and tells the other replicas to clear theirs. Resolves to the number removed here (L1 + L2);
   * rejects with storage_unavailable when L2 or the change feed failed (the purge can be repeated).
   */
  async purge(filter: CachePurgeFilter): Promise<number> {
    const exact = purgeFilter(filter);
    const fromL1 = this.purgeLocal(exact);
    const [shared, announced] = await Promise.allSettled([
      this.l2 ? this.l2.purge(exact) : Promise.resolve(0),
      this.changes.publish({ entity: PROXY_CACHE_ENTITY, id: JSON.stringify(exact) }),
    ]);
    const failures: string[] = [];
    if (shared.status === 'rejected') failures.push(this.purgeFailed('the shared (L2) cache', 'proxy_cache_l2_purge', shared.reason));
    if (announced.status === 'rejected') failures.push(this.purgeFailed('the other replicas', 'proxy_cache_announce', announced.reason));
    if (failures.length > 0) {
      throw new GatewayError(ErrorCode.StorageUnavailable, `cache purge incomplete: could not reach ${failures.join(' or ')}; retry`);
    }
    return fromL1 + (shared.status === 'fulfilled' ? shared.value : 0);
  }

  private purgeLocal(filter: CachePurgeFilter): number {
    this.purges++;
    return this.l1.purge(filter);
  }

  private onChange(event: ChangeEvent): void {
    if (event.entity !== PROXY_CACHE_ENTITY) return;
    const filter = parseFilter(event.id);
    if (filter === null) {
      this.logger.warn('ignoring a proxy cache purge event whose filter is not valid JSON');
      return;
    }
    this.purgeLocal(filter);
  }

  private hit(entry: CachedResponse, level: CacheLevel): { entry: CachedResponse; level: CacheLevel } {
    this.count(level === 'l1' ? 'hit_l1' : 'hit_l2');
    return { entry, level };
  }

  private count(result: LookupResult): void {
    this.lookups.inc({ result });
  }

  private l2Failed(operation: 'get' | 'set', error: unknown): void {
    this.metrics.storageErrors.inc({ operation: `proxy_cache_l2_${operation}` });
    const now = Date.now();
    if (now - this.lastL2ErrorLog < L2_ERROR_LOG_INTERVAL_MS) {
      this.suppressedL2Errors++;
      return;
    }
    const suppressed = this.suppressedL2Errors ? ` (${this.suppressedL2Errors} more L2 failures since the last report)` : '';
    this.lastL2ErrorLog = now;
    this.suppressedL2Errors = 0;
    this.logger.warn(`proxy cache L2 ${operation} failed, served as a miss: ${describe(error)}${suppressed}`);
  }

  private purgeFailed(what: string, operation: string, error: unknown): string {
    this.metrics.storageErrors.inc({ operation });
    this.logger.error(`proxy cache purge could not reach ${what}: ${describe(error)}`);
    return what;
  }
}

/** The filter with only the fields given, so its JSON (the change event id) is the same for equal filters. */
function purgeFilter(filter: CachePurgeFilter): CachePurgeFilter {
  return {
    ...(filter.keyId !== undefined ? { keyId: filter.keyId } : {}),
    ...(filter.model !== undefined ? { model: filter.model } : {}),
  };
}

function parseFilter(id: string): CachePurgeFilter | null {
  let value: unknown;
  try {
    value = JSON.parse(id);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const { keyId, model } = value as Record<string, unknown>;
  if ((keyId !== undefined && typeof keyId !== 'string') || (model !== undefined && typeof model !== 'string')) return null;
  return purgeFilter({ keyId, model } as CachePurgeFilter);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
