import * as path from 'node:path';
import { z } from 'zod';
import { defineConfig } from '../config/config-slice';
import { boolean, integer, optional, redisScheme, url } from '../config/env-schema';
import { BACKEND_NAMES, StorageOptions } from './ports/storage-backend';
import { StorageSelectionInput } from './storage-selection';

/** Which store, how it is chosen (docs/storage.md), and how to reach each candidate. */
export const storageConfig = defineConfig(
  'storage',
  {
    STORAGE_BACKEND: z.enum(['auto', ...BACKEND_NAMES]).default('auto'),
    STORAGE_FALLBACK: boolean(true),
    SQLITE_PATH: z.string().min(1).default('./data/ditto.sqlite'),
    STATE_FILE: z.string().min(1).default('./data/gateway.state.json'),
    POSTGRES_DSN: url('postgres', 'postgresql'),
    POSTGRES_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case SQL identifier').default('public'),
    PG_POOL_MIN: integer(0, 2, 1000),
    // At least 2: a scheduled job holds one connection for its advisory lock while it works on another.
    PG_POOL_MAX: integer(2, 10, 1000),
    MONGODB_URI: url('mongodb', 'mongodb+srv'),
    MONGODB_DATABASE: z.string().regex(/^[^/\\. "$]{1,63}$/, 'expected a MongoDB database name').default('ditto'),
    VALKEY_URL: url('redis', 'rediss', 'valkey', 'valkeys'),
    REDIS_URL: url('redis', 'rediss'),
    REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.:{}-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . : { } -').default('ditto'),
    REDIS_TIMEOUT_MS: integer(100, 10_000),
    CHANGE_FEED_POLL_MS: integer(20, 250, 60_000),
    CACHE_REDIS_URL: url('redis', 'rediss', 'valkey', 'valkeys'),
    DATA_DIR: optional(z.string().min(1)),
  },
  (env): { selection: StorageSelectionInput; options: StorageOptions; cacheRedisUrl: string | null; dataDir: string } => ({
    selection: {
      forced: env.STORAGE_BACKEND === 'auto' ? null : env.STORAGE_BACKEND,
      fallback: env.STORAGE_FALLBACK,
      redisUrlVariable: env.VALKEY_URL ? 'VALKEY_URL' : env.REDIS_URL ? 'REDIS_URL' : null,
      postgres: Boolean(env.POSTGRES_DSN),
      mongodb: Boolean(env.MONGODB_URI),
    },
    options: {
      sqlite: { path: env.SQLITE_PATH },
      state: { file: env.STATE_FILE },
      postgres: { dsn: env.POSTGRES_DSN ?? '', schema: env.POSTGRES_SCHEMA, poolMin: env.PG_POOL_MIN, poolMax: env.PG_POOL_MAX },
      mongodb: { uri: env.MONGODB_URI ?? '', database: env.MONGODB_DATABASE },
      redis: { url: redisScheme(env.VALKEY_URL ?? env.REDIS_URL ?? ''), prefix: env.REDIS_PREFIX, timeoutMs: env.REDIS_TIMEOUT_MS },
      changePollMs: env.CHANGE_FEED_POLL_MS,
    },
    /** The shared (L2) response cache: CACHE_REDIS_URL, else the store's redis when the store is redis, else none. */
    cacheRedisUrl: env.CACHE_REDIS_URL ? redisScheme(env.CACHE_REDIS_URL) : null,
    /** This replica's own files (the settle journal): DATA_DIR, else the SQLite file's directory. */
    dataDir: env.DATA_DIR ?? path.dirname(env.SQLITE_PATH),
  }),
  (env) => {
    const problems: string[] = [];
    if (env.PG_POOL_MIN > env.PG_POOL_MAX) problems.push('PG_POOL_MIN: must not exceed PG_POOL_MAX');
    const needs: Partial<Record<typeof env.STORAGE_BACKEND, [boolean, string]>> = {
      redis: [Boolean(env.VALKEY_URL || env.REDIS_URL), 'VALKEY_URL or REDIS_URL'],
      postgres: [Boolean(env.POSTGRES_DSN), 'POSTGRES_DSN'],
      mongodb: [Boolean(env.MONGODB_URI), 'MONGODB_URI'],
    };
    const need = needs[env.STORAGE_BACKEND];
    if (need && !need[0]) problems.push(`STORAGE_BACKEND: "${env.STORAGE_BACKEND}" needs ${need[1]} to be set`);
    return problems;
  },
);
