import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import Redis from 'ioredis';
import { openBackend } from '../src/storage/open-backend';
import { BackendName, StorageBackend, StorageOptions } from '../src/storage/ports/storage-backend';

export const PG_DSN = process.env.TEST_POSTGRES_DSN ?? 'postgres://postgres@127.0.0.1:5432/ditto_test';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Runs `fn` on a throw-away store of `name` (a temp SQLite file, a new PostgreSQL schema, a new Redis
 * prefix, a new MongoDB database when MONGODB_URI is set) and removes it afterwards. A backend that
 * cannot be opened is reported on stderr and answers null.
 */
export async function withStore<T>(name: BackendName, fn: (b: StorageBackend, options: StorageOptions) => Promise<T>): Promise<T | null> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-bench-'));
  const schema = `bench_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const prefix = `ditto-bench-${randomUUID().slice(0, 8)}`;
  const options: StorageOptions = {
    sqlite: { path: path.join(dir, 'bench.sqlite') },
    state: { file: path.join(dir, 'state.json') },
    postgres: { dsn: PG_DSN, poolMin: 2, poolMax: 10, schema },
    mongodb: { uri: process.env.MONGODB_URI ?? '', database: `ditto_bench_${schema}` },
    redis: { url: REDIS_URL, prefix, timeoutMs: 10_000 },
    changePollMs: 1000,
  };
  let backend: StorageBackend | null = null;
  try {
    backend = await openBackend(name, options);
    return await fn(backend, options);
  } catch (error) {
    process.stderr.write(`${name}: skipped (${(error as Error).message})\n`);
    return null;
  } finally {
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
    if (name === 'postgres') {
      const client = new Client({ connectionString: PG_DSN });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    }
    if (name === 'redis') {
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}:*`);
      for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
      redis.disconnect();
    }
  }
}
