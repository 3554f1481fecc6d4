import { Logger, Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import type { ConfigType } from '@nestjs/config';
import { storageConfig } from '../storage/storage.config';
import { cacheConfig } from './cache.config';
import { ActiveStorage } from '../storage/active-storage';
import { redactUrl } from '../storage/redact';
import { CacheController } from './cache.controller';
import { l2RedisUrl } from './l2-url';
import { openRedisResponseCacheStore } from '../storage/backends/redis/redis-response-cache.store';
import { RequestCache } from './request-cache';
import { ResponseCacheService } from './response-cache.service';
import { ResponseCacheStore } from '../storage/ports/response-cache-store';

/** An L2 answer slower than this is not worth waiting for: the request goes upstream as a miss. */
const L2_TIMEOUT_CAP_MS = 1000;
const CONNECTION_ERROR_LOG_INTERVAL_MS = 60_000;

async function openL2(
  cache: ConfigType<typeof cacheConfig>,
  storageSettings: ConfigType<typeof storageConfig>,
  storage: ActiveStorage,
): Promise<ResponseCacheStore | null> {
  const logger = new Logger('ResponseCacheStore');
  const url = l2RedisUrl(cache, storageSettings, storage.info.backend);
  if (url === null) {
    logger.log('proxy cache: in-process only (no CACHE_REDIS_URL, and the store is not redis)');
    return null;
  }
  logger.log(`proxy cache: in-process, shared through redis ${redactUrl(url)}`);
  let lastLog = 0;
  return openRedisResponseCacheStore({
    url,
    prefix: `${storageSettings.options.redis.prefix}:cache`,
    timeoutMs: Math.min(storageSettings.options.redis.timeoutMs, L2_TIMEOUT_CAP_MS),
    onError: (error) => {
      if (Date.now() - lastLog < CONNECTION_ERROR_LOG_INTERVAL_MS) return;
      lastLog = Date.now();
      logger.warn(`proxy cache redis connection: ${error.message}`);
    },
  });
}

/**
 * The proxy response cache (ResponseCacheService, used by the proxy) and its admin purge route. The
 * shared L2 is opened here, when there is a redis to put it in. the configuration, ActiveStorage, ChangeFeed
 * and metrics come from global modules.
 */
@Module({
  imports: [AuditModule],
  controllers: [CacheController],
  providers: [
    { provide: ResponseCacheStore, useFactory: openL2, inject: [cacheConfig.KEY, storageConfig.KEY, ActiveStorage] },
    ResponseCacheService,
    RequestCache,
  ],
  exports: [ResponseCacheService, RequestCache],
})
export class CacheModule {}
