import { CacheConfig, StorageConfig } from '../config/app-config';
import { BackendName } from '../storage/storage-backend';

/** Where the shared (L2) cache lives: CACHE_REDIS_URL, else the store's server when the store is redis, else nowhere. */
export function l2RedisUrl(cache: CacheConfig, storage: StorageConfig, backend: BackendName): string | null {
  if (cache.redisUrl) return cache.redisUrl;
  return backend === 'redis' && storage.options.redis.url ? storage.options.redis.url : null;
}
