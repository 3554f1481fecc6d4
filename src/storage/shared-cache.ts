import { BackendName, StorageOptions } from './ports/storage-backend';

/**
 * Where the shared (L2) response cache lives: CACHE_REDIS_URL (a server of its own, on a connection
 * of its own, whatever the store), else the store's server when the store is redis (on the store's one
 * command connection), else nowhere: the cache is in-process only.
 */
export function sharedCacheLocation(
  settings: { cacheRedisUrl: string | null; options: StorageOptions },
  backend: BackendName,
): { url: string; ownConnection: boolean } | null {
  if (settings.cacheRedisUrl) return { url: settings.cacheRedisUrl, ownConnection: true };
  return backend === 'redis' && settings.options.redis.url ? { url: settings.options.redis.url, ownConnection: false } : null;
}
