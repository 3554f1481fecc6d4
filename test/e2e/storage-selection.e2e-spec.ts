import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ADMIN_TOKEN, adminGet, startGateway } from './harness';

const MAIN = path.resolve(__dirname, '../../dist/src/main.js');

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
      .once('error', () => resolve(false))
      .listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}

async function waitFor(url: string, ms: number): Promise<Response> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fetch(url);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe('storage selection at start-up (e2e)', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'ditto-e2e-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('starts the built server with no environment at all: SQLite at ./data/ditto.sqlite, /health 200', async () => {
    expect(existsSync(MAIN)).toBe(true); // `npm test` builds first (pretest)
    // Truly empty environment when the default port is free; otherwise only PORT is set.
    const env: Record<string, string> = (await portIsFree(8080)) ? {} : { PORT: '18089' };
    const port = env.PORT ?? '8080';
    const child = spawn(process.execPath, [MAIN], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    try {
      const response = await waitFor(`http://127.0.0.1:${port}/health`, 15_000);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: 'ok' });
      expect(existsSync(path.join(dir, 'data', 'ditto.sqlite'))).toBe(true);
      expect(output).toContain('using sqlite storage (selected by default)');
      // Admin API is off without a token: 404 admin_disabled, never data.
      const admin = await fetch(`http://127.0.0.1:${port}/admin/storage`);
      expect(admin.status).toBe(404);
      expect(((await admin.json()) as any).error.code).toBe('admin_disabled');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 30_000);

  it('falls back from an unreachable REDIS_URL to sqlite and says so in /admin/storage', async () => {
    const gateway = await startGateway({
      REDIS_URL: 'redis://:hunter2-secret@127.0.0.1:1/0',
      REDIS_TIMEOUT_MS: '1000',
      SQLITE_PATH: path.join(dir, 'fallback.sqlite'),
      ADMIN_TOKEN,
    });
    try {
      const info = await adminGet(gateway, '/admin/storage');
      expect(info.status).toBe(200);
      expect(info.body).toMatchObject({ backend: 'sqlite', selected_by: 'default', healthy: true });
      expect(info.body.fallback_from).toHaveLength(1);
      expect(info.body.fallback_from[0].backend).toBe('redis');
      expect(info.body.fallback_from[0].error).toMatch(/REDIS_URL/);
      expect(JSON.stringify(info.body)).not.toContain('hunter2');
      const alias = await adminGet(gateway, '/api/auth/storage-info');
      expect(alias.body).toEqual({ ...info.body, healthy: true });
      const errorLine = gateway.logs.find((l) => l.level === 'error' && String(l.msg).includes('failed to initialise redis'));
      expect(errorLine).toBeDefined();
      expect(JSON.stringify(gateway.logs)).not.toContain('hunter2');
      expect(existsSync(path.join(dir, 'fallback.sqlite'))).toBe(true);
    } finally {
      await gateway.close();
    }
  }, 30_000);

  it('refuses to start when the chosen backend fails and STORAGE_FALLBACK=false', async () => {
    await expect(
      startGateway({ REDIS_URL: 'redis://127.0.0.1:1', REDIS_TIMEOUT_MS: '500', STORAGE_FALLBACK: 'false', SQLITE_PATH: path.join(dir, 'x.sqlite') }),
    ).rejects.toThrow(/no storage backend could be initialised: redis: REDIS_URL/);
    expect(existsSync(path.join(dir, 'x.sqlite'))).toBe(false);
  });

  it('never overwrites a corrupt state file: refuses to start, or falls back with the cause logged', async () => {
    const file = path.join(dir, 'state.json');
    writeFileSync(file, '{"version":1,"virtual_keys":[{"id":');
    await expect(startGateway({ STORAGE_BACKEND: 'state', STATE_FILE: file, STORAGE_FALLBACK: 'false' })).rejects.toThrow(
      /STATE_FILE ".*state.json": not valid JSON/,
    );
    const gateway = await startGateway({ STORAGE_BACKEND: 'state', STATE_FILE: file, SQLITE_PATH: path.join(dir, 'f.sqlite'), ADMIN_TOKEN });
    try {
      const info = await adminGet(gateway, '/admin/storage');
      expect(info.body).toMatchObject({ backend: 'sqlite', fallback_from: [{ backend: 'state', error: expect.stringMatching(/STATE_FILE/) }] });
    } finally {
      await gateway.close();
    }
    expect(readFileSync(file, 'utf8')).toBe('{"version":1,"virtual_keys":[{"id":');
  });

  it('names SQLITE_PATH when the database file cannot be created', async () => {
    const blocker = path.join(dir, 'not-a-directory');
    writeFileSync(blocker, 'x');
    await expect(startGateway({ SQLITE_PATH: path.join(blocker, 'ditto.sqlite'), STORAGE_FALLBACK: 'false' })).rejects.toThrow(/SQLITE_PATH/);
  });

  it('stops with one clear line per configuration problem, exit code 1', async () => {
    const child = spawn(process.execPath, [MAIN], {
      cwd: dir,
      env: { STORAGE_BACKEND: 'cassandra', POSTGRES_DSN: 'mysql://user:pw@host/db', PG_POOL_MAX: 'ten' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(1);
    expect(output).toContain('STORAGE_BACKEND');
    expect(output).toContain('POSTGRES_DSN');
    expect(output).toContain('PG_POOL_MAX');
    expect(output).not.toContain(':pw@');
    expect(output).not.toMatch(/\n\s+at /); // no stack trace
  }, 15_000);
});
