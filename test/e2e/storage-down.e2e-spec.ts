import { ChildProcess } from 'node:child_process';
import { Client } from 'pg';
import { PG_DSN } from './backends';
import { ADMIN_TOKEN, RunningGateway, admin, freePort, startGateway } from './harness';
import { killRedis, startRedis } from './own-redis';

/** Every admin route that reads or writes the store, with a body where it takes one. */
const ADMIN_CALLS: Array<[string, string, unknown?]> = [
  ['GET', '/admin/keys'],
  ['POST', '/admin/keys', { id: 'during-outage' }],
  ['GET', '/admin/keys/existing'],
  ['PATCH', '/admin/keys/existing', { name: 'x' }],
  ['DELETE', '/admin/keys/existing'],
  ['GET', '/admin/budgets'],
  ['GET', '/admin/budgets/key:existing'],
  ['PUT', '/admin/budgets/tenant:acme', { limit_tokens: 100 }],
  ['GET', '/admin/costs'],
  ['GET', '/admin/limits'],
  ['PUT', '/admin/limits/tenant:acme', { rpm: 10 }],
  ['GET', '/admin/audit'],
  ['POST', '/admin/reservations/reap', {}],
];

/** 503 storage_unavailable in OpenAI's error shape, without a driver's words or a stack. */
function expectUnavailable(route: string, answer: { status: number; body: any }): void {
  expect([route, answer.status, answer.body?.error?.code]).toEqual([route, 503, 'storage_unavailable']);
  expect(answer.body.error.message).not.toMatch(/ECONNREFUSED|Connection is closed|terminat|ioredis|pg_|\n\s+at /i);
}

describe('the admin API while the store is down (e2e, own stores)', () => {
  it('answers 503 storage_unavailable on redis, never a masked 500', async () => {
    const port = await freePort();
    let redis: ChildProcess | undefined = await startRedis(port);
    const gateway: RunningGateway = await startGateway({
      STORAGE_BACKEND: 'redis',
      REDIS_URL: `redis://127.0.0.1:${port}`,
      REDIS_PREFIX: 'storage-down',
      REDIS_TIMEOUT_MS: '300',
      STORAGE_FALLBACK: 'false',
      ADMIN_TOKEN,
      AUDIT_RETENTION_SECS: '0',
    });
    try {
      expect((await admin(gateway, 'POST', '/admin/keys', { id: 'existing' })).status).toBe(201);
      await killRedis(redis);
      redis = undefined;
      for (const [method, path, body] of ADMIN_CALLS) expectUnavailable(`${method} ${path}`, await admin(gateway, method, path, body));
      expect((await fetch(`${gateway.url}/ready`)).status).toBe(503);
    } finally {
      await gateway.close();
      if (redis) await killRedis(redis);
    }
  }, 60_000);

  it('answers 503 storage_unavailable on postgres when its connections are cut and the database is gone', async () => {
    const database = `ditto_down_${Date.now().toString(36)}`;
    const root = new Client({ connectionString: PG_DSN });
    await root.connect();
    await root.query(`CREATE DATABASE ${database}`);
    const dsn = PG_DSN.replace(/\/[^/]*$/, `/${database}`);
    const gateway = await startGateway({ STORAGE_BACKEND: 'postgres', POSTGRES_DSN: dsn, STORAGE_FALLBACK: 'false', ADMIN_TOKEN, AUDIT_RETENTION_SECS: '0' });
    try {
      expect((await admin(gateway, 'POST', '/admin/keys', { id: 'existing' })).status).toBe(201);
      // Refuse new connections to this database only, then cut the open ones (never the machine's others).
      await root.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS false`);
      await root.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [database]);
      for (const [method, path, body] of ADMIN_CALLS) expectUnavailable(`${method} ${path}`, await admin(gateway, method, path, body));
    } finally {
      await gateway.close().catch(() => undefined);
      await root.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`).catch(() => undefined);
      await root.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
      await root.end();
    }
  }, 60_000);
});
