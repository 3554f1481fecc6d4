import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { Client } from 'pg';
import { ensurePostgresDatabase } from '../support/services';
import { PG_DSN } from './backends';
import { freePort } from './harness';

const ROOT = path.resolve(__dirname, '../..');

/** Runs the memory contract suite (no service of its own) in a child Jest with `env` on top of ours. */
function jestWith(env: Record<string, string>): { status: number | null; output: string } {
  const result = spawnSync(
    process.execPath,
    [path.join(ROOT, 'node_modules/jest/bin/jest.js'), '--selectProjects', 'storage-contract', '--testPathPatterns', 'memory.contract'],
    { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 },
  );
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** The lines of `output` that are not Jest's own banner. */
const ownLines = (output: string) => output.split('\n').filter((l) => l.trim() && !l.startsWith('Running one project'));

// What a newcomer sees from `npm test` on a machine where a service is missing: one line that names
// the service, the address tried, and how to start it or which variable to set; no suite runs.
describe('the test setup on a machine without PostgreSQL or Redis (e2e, child Jest)', () => {
  it('stops with one line naming PostgreSQL, the address and the fix', async () => {
    const port = await freePort();
    const { status, output } = jestWith({ TEST_POSTGRES_DSN: `postgres://postgres:pw-secret@127.0.0.1:${port}/ditto_test` });
    expect(status).toBe(1);
    expect(ownLines(output)).toEqual([
      expect.stringMatching(
        new RegExp(`^PostgreSQL is not reachable at 127\\.0\\.0\\.1:${port} \\(TEST_POSTGRES_DSN=postgres://\\*\\*\\*@127\\.0\\.0\\.1:${port}/ditto_test\\): .*ECONNREFUSED.*pg_ctlcluster.*set TEST_POSTGRES_DSN`),
      ),
    ]);
    expect(output).not.toContain('pw-secret');
  }, 60_000);

  it('stops with one line naming Redis, the address and the fix', async () => {
    const port = await freePort();
    const { status, output } = jestWith({ TEST_REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(status).toBe(1);
    expect(ownLines(output)).toEqual([
      expect.stringMatching(new RegExp(`^Redis is not reachable at 127\\.0\\.0\\.1:${port} \\(TEST_REDIS_URL=redis://127\\.0\\.0\\.1:${port}\\): .*ECONNREFUSED.*redis-server.*set TEST_REDIS_URL`)),
    ]);
  }, 60_000);

  it('creates the test database when the server does not have it yet', async () => {
    const database = `ditto_fresh_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
    const dsn = PG_DSN.replace(/\/[^/?]*(\?|$)/, `/${database}$1`);
    const exists = async () => {
      const client = new Client({ connectionString: PG_DSN });
      await client.connect();
      try {
        return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1;
      } finally {
        await client.end();
      }
    };
    try {
      expect(await exists()).toBe(false);
      await ensurePostgresDatabase(dsn, 'TEST_POSTGRES_DSN');
      expect(await exists()).toBe(true);
      // A second run (or another run at the same time) finds it there.
      await Promise.all([ensurePostgresDatabase(dsn, 'TEST_POSTGRES_DSN'), ensurePostgresDatabase(dsn, 'TEST_POSTGRES_DSN')]);
      const client = new Client({ connectionString: dsn });
      await client.connect();
      await client.end();
    } finally {
      const admin = new Client({ connectionString: PG_DSN });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${database}"`);
      await admin.end();
    }
  });
});
