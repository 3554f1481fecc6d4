import { DynamicModule, FactoryProvider, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { Connection, Model } from 'mongoose';
import type { DataSource } from 'typeorm';
import { MemoryRateLimiter } from './backends/memory/memory-rate-limiter';
import type { MongooseModels } from './backends/mongoose/mongoose.schemas';
import { BackendConnection } from './connect-backend';
import { RateLimiterStore } from './ports/rate-limiter-store';
import { ResponseCacheStore } from './ports/response-cache-store';
import { StorageBackend, StorageOptions } from './ports/storage-backend';
import { redactUrl } from './redact';
import { sharedCacheLocation } from './shared-cache';

/** The assembled backend (every port on it). */
export const STORAGE_BACKEND = 'ditto:storage-backend';

/** An L2 answer slower than this is not worth waiting for: the request goes upstream as a miss. */
const L2_TIMEOUT_CAP_MS = 1000;
const CONNECTION_ERROR_LOG_INTERVAL_MS = 60_000;

export interface StorageSettings {
  options: StorageOptions;
  cacheRedisUrl: string | null;
}

/** How one selected backend is wired into Nest: the integration module holding its connection, and providers built on it. */
export interface BackendWiring {
  imports: Array<DynamicModule | Promise<DynamicModule>>;
  backend: FactoryProvider<Promise<StorageBackend> | StorageBackend>;
  rateLimiter: FactoryProvider<RateLimiterStore>;
  responseCache: FactoryProvider<Promise<ResponseCacheStore | null>>;
}

/**
 * The design card's integrations, each used as its documentation shows, with the connection the
 * selection's probe opened (SQL), or the one the module opens once the probe's succeeded (MongoDB, Redis):
 * - sqlite / postgres: `TypeOrmModule.forRootAsync({ dataSourceFactory })` with the probed, migrated
 *   DataSource; the backend is assembled on the DataSource injected from it;
 * - mongodb: `MongooseModule.forRootAsync` opens the connection (with the options the probe used) and
 *   `MongooseModule.forFeature` registers the models on it; the backend is assembled on the injected
 *   connection and models;
 * - redis: `RedisModule.forRootAsync` opens the ONE command connection the store, the rate limiter
 *   and the L2 cache share (the change feed adds the subscriber connection pub/sub needs);
 * - memory / state: plain providers.
 */
export async function backendWiring(connection: BackendConnection, settings: StorageSettings): Promise<BackendWiring> {
  const { options } = settings;
  // Drivers and their Nest modules are loaded for the chosen backend only.
  switch (connection.name) {
    case 'memory':
    case 'state':
      return {
        imports: [],
        backend: { provide: STORAGE_BACKEND, useFactory: () => connection.backend },
        rateLimiter: inProcessLimiter(),
        responseCache: sharedCache(settings, connection.name),
      };
    case 'sqlite':
    case 'postgres': {
      const { TypeOrmModule, getDataSourceToken } = await import('@nestjs/typeorm');
      const { typeormBackend } = await import('./backends/typeorm/typeorm.backend');
      const probed = connection.typeorm;
      return {
        imports: [TypeOrmModule.forRootAsync({ useFactory: () => probed.dataSource.options, dataSourceFactory: async () => probed.dataSource })],
        backend: {
          provide: STORAGE_BACKEND,
          useFactory: (dataSource: DataSource) => typeormBackend({ ...probed, dataSource }, options),
          inject: [getDataSourceToken()],
        },
        rateLimiter: inProcessLimiter(),
        responseCache: sharedCache(settings, connection.name),
      };
    }
    case 'mongodb': {
      const { MongooseModule, getConnectionToken, getModelToken } = await import('@nestjs/mongoose');
      const { connectionOptions, mongooseBackend } = await import('./backends/mongoose/mongoose.backend');
      const { MODEL_DEFINITIONS } = await import('./backends/mongoose/mongoose.schemas');
      const definitions = Object.entries(MODEL_DEFINITIONS) as Array<[keyof MongooseModels, (typeof MODEL_DEFINITIONS)[keyof MongooseModels]]>;
      return {
        imports: [
          MongooseModule.forRootAsync({ useFactory: () => ({ uri: options.mongodb.uri, ...connectionOptions(options) }) }),
          MongooseModule.forFeature(definitions.map(([, definition]) => definition)),
        ],
        backend: {
          provide: STORAGE_BACKEND,
          useFactory: (db: Connection, ...models: Array<Model<unknown>>) =>
            mongooseBackend(db, Object.fromEntries(definitions.map(([key], i) => [key, models[i]])) as unknown as MongooseModels, options),
          inject: [getConnectionToken(), ...definitions.map(([, definition]) => getModelToken(definition.name))],
        },
        rateLimiter: inProcessLimiter(),
        responseCache: sharedCache(settings, 'mongodb'),
      };
    }
    case 'redis': {
      const { RedisModule, getRedisConnectionToken } = await import('@nestjs-modules/ioredis');
      const { commandConnectionOptions, redisBackend } = await import('./backends/redis/redis.backend');
      const { RedisRateLimiter } = await import('./backends/redis/redis-rate-limiter');
      return {
        imports: [RedisModule.forRootAsync({ useFactory: () => ({ type: 'single', url: options.redis.url, options: commandConnectionOptions(options) }) })],
        backend: { provide: STORAGE_BACKEND, useFactory: (client: Redis) => redisBackend(client, options), inject: [getRedisConnectionToken()] },
        rateLimiter: {
          provide: RateLimiterStore,
          useFactory: (client: Redis) => new RedisRateLimiter(client, options.redis.prefix),
          inject: [getRedisConnectionToken()],
        },
        responseCache: { ...sharedCache(settings, 'redis'), inject: [getRedisConnectionToken()] },
      };
    }
  }
}

/** Rate-limit counters per replica, in process (the shared ones need redis). */
function inProcessLimiter(): FactoryProvider<RateLimiterStore> {
  return { provide: RateLimiterStore, useFactory: () => new MemoryRateLimiter() };
}

/** The L2 response cache: on the store's redis connection (injected as the factory's argument) or a connection of its own. */
function sharedCache(settings: StorageSettings, backend: BackendConnection['name']): FactoryProvider<Promise<ResponseCacheStore | null>> {
  return {
    provide: ResponseCacheStore,
    useFactory: async (storeConnection?: Redis) => {
      const logger = new Logger('ResponseCacheStore');
      const location = sharedCacheLocation(settings, backend);
      const prefix = `${settings.options.redis.prefix}:cache`;
      const timeoutMs = Math.min(settings.options.redis.timeoutMs, L2_TIMEOUT_CAP_MS);
      if (location === null) {
        logger.log('proxy cache: in-process only (no CACHE_REDIS_URL, and the store is not redis)');
        return null;
      }
      logger.log(`proxy cache: in-process, shared through redis ${redactUrl(location.url)}${location.ownConnection ? '' : " (the store's connection)"}`);
      const { RedisResponseCacheStore, openRedisResponseCacheStore } = await import('./backends/redis/redis-response-cache.store');
      if (!location.ownConnection && storeConnection) return new RedisResponseCacheStore(storeConnection, prefix, timeoutMs, false);
      let lastLog = 0;
      return openRedisResponseCacheStore({
        url: location.url,
        prefix,
        timeoutMs,
        onError: (error) => {
          if (Date.now() - lastLog < CONNECTION_ERROR_LOG_INTERVAL_MS) return;
          lastLog = Date.now();
          logger.warn(`proxy cache redis connection: ${error.message}`);
        },
      });
    },
  };
}
