import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import mongoose from 'mongoose';
import { Client } from 'pg';

export const PG_DSN = process.env.TEST_POSTGRES_DSN ?? 'postgres://postgres@127.0.0.1:5432/ditto_test';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export type SharedBackend = 'sqlite' | 'postgres' | 'redis' | 'mongodb';

/**
 * The backends every per-backend e2e runs on: MongoDB when the test setup provides one (MONGODB_URI, or
 * the FerretDB it starts from .cache/bin; test/support/global-setup.ts), else it is left out, loudly.
 */
export const E2E_BACKENDS: SharedBackend[] = ['sqlite', 'postgres', 'redis', ...(process.env.MONGODB_URI ? ['mongodb' as const] : [])];

export interface BackendEnv {
  /** Environment that points a gateway at a fresh, isolated store; share it between instances. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

/** A fresh store per backend: a temp SQLite file, a new PostgreSQL schema, a new Redis key prefix, a new MongoDB database. */
export async function backendEnv(backend: SharedBackend): Promise<BackendEnv> {
  const suffix = randomUUID().replace(/-/g, '').slice(0, 12);
  if (backend === 'mongodb') {
    const uri = process.env.MONGODB_URI ?? '';
    const database = `ditto_e2e_${suffix}`;
    return {
      env: { STORAGE_BACKEND: 'mongodb', MONGODB_URI: uri, MONGODB_DATABASE: database, STORAGE_FALLBACK: 'false' },
      cleanup: async () => {
        const connection = await mongoose.createConnection(uri, { dbName: database }).asPromise();
        await connection.dropDatabase();
        await connection.close();
      },
    };
  }
  if (backend === 'sqlite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'ditto-e2e-'));
    return {
      env: { STORAGE_BACKEND: 'sqlite', SQLITE_PATH: path.join(dir, 'ditto.sqlite'), STORAGE_FALLBACK: 'false', CHANGE_FEED_POLL_MS: '100' },
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  if (backend === 'postgres') {
    const schema = `e2e_${suffix}`;
    return {
      env: { STORAGE_BACKEND: 'postgres', POSTGRES_DSN: PG_DSN, POSTGRES_SCHEMA: schema, STORAGE_FALLBACK: 'false' },
      cleanup: async () => {
        const client = new Client({ connectionString: PG_DSN });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await client.end();
      },
    };
  }
  const prefix = `ditto-e2e-${suffix}`;
  return {
    env: { STORAGE_BACKEND: 'redis', REDIS_URL, REDIS_PREFIX: prefix, STORAGE_FALLBACK: 'false' },
    cleanup: async () => {
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    },
  };
}
