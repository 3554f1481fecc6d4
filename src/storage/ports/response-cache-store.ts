import { CachePurgeFilter, CachedResponse } from '../../cache/domain/cached-response';

/**
 * The shared (L2) response cache, seen by every replica. Entries expire on their own at `expiresAt`.
 * Only redis implements it (docs/architecture.md); without one the cache is in-process only.
 */
export abstract class ResponseCacheStore {
  /** The live entry under `hash`, or null. */
  abstract get(hash: string): Promise<CachedResponse | null>;
  /** Stores the entry until its expiresAt (already expired: nothing is stored). */
  abstract set(hash: string, entry: CachedResponse): Promise<void>;
  /** Deletes the entries matching the filter (all when it is empty); resolves to how many. */
  abstract purge(filter: CachePurgeFilter): Promise<number>;
  /** Closes the connection. Idempotent. */
  abstract close(): Promise<void>;
}
