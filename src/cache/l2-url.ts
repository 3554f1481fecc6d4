import type { ConfigType } from '@nestjs/config';
import { BackendName } from '../storage/ports/storage-backend';
import { storageConfig } from '../storage/storage.config';
import { cacheConfig } from './cache.config';

/** Where the shared (L2) cache lives: CACHE_REDIS_URL, else the store's server when the store is redis, else nowhere. */
export function l2RedisUrl(cache: ConfigType<typeof cacheConfig>, storage: ConfigType<typeof storageConfig>, backend: BackendName): string | null {
  if (cache.redisUrl) return cache.redisUrl;
  return backend === 'redis' && storage.options.redis.url ? storage.options.redis.url : null;
}
