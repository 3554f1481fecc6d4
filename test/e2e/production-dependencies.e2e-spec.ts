import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ChildGateway, requireBuild, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN, within } from './harness';

const ROOT = path.resolve(__dirname, '../..');

/**
 * The runtime stage of the Dockerfile holds package.json, the production `node_modules` and `dist/src`,
 * nothing else: this builds that set in a temporary directory and serves a governed request from it.
 * The dependency set is made the way the Dockerfile's build stage makes it: the full install of the
 * lock file (here the one `npm ci` made in this checkout), then `npm prune --omit=dev`. (`npm ci
 * --omit=dev` gives the same packages, checked by hand, but takes 2 minutes here: it compiles
 * better-sqlite3 again.) A dependency used at run time but declared as a dev dependency, or a file
 * the server reads outside dist/src, fails this test.
 */
describe('the production image dependency set (e2e, child process)', () => {
  let dir: string;
  let upstream: MockUpstream;
  let gateway: ChildGateway | undefined;

  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-prod-'));
    // Module resolution walks up from the copy: no node_modules above it may lend it a package.
    for (let up = path.dirname(dir); up !== path.dirname(up); up = path.dirname(up)) {
      expect(existsSync(path.join(up, 'node_modules'))).toBe(false);
    }
    for (const file of ['package.json', 'package-lock.json', 'node_modules', 'dist/src']) {
      cpSync(path.join(ROOT, file), path.join(dir, file), { recursive: true });
    }
    execFileSync('npm', ['prune', '--omit=dev', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'pipe', timeout: 60_000 });
    upstream = await startMockUpstream();
  }, 90_000);

  afterAll(async () => {
    if (gateway && gateway.process.exitCode === null) {
      gateway.process.kill('SIGKILL');
      await gateway.exited;
    }
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('has no dev dependency left, among them the compiler the SQLite writer thread uses in tests', () => {
    for (const dev of ['@swc/core', '@swc/jest', 'typescript', 'jest', 'eslint', 'openai', '@anthropic-ai/sdk']) {
      expect([dev, existsSync(path.join(dir, 'node_modules', dev))]).toEqual([dev, false]);
    }
    expect(existsSync(path.join(dir, 'node_modules/better-sqlite3'))).toBe(true);
  });

  it('starts the built server on SQLite and charges a governed request through the SQLite writer thread', async () => {
    gateway = await startChildGateway(
      {
        NODE_ENV: 'production',
        STORAGE_BACKEND: 'sqlite',
        STORAGE_FALLBACK: 'false',
        SQLITE_PATH: path.join(dir, 'data/ditto.sqlite'),
        ADMIN_TOKEN,
        UPSTREAM_BASE_URL: upstream.url,
      },
      dir,
      path.join(dir, 'dist/src/main.js'),
    );
    const admin = (method: string, url: string, body?: unknown) =>
      fetch(`${gateway!.url}${url}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    const created = await admin('POST', '/admin/keys', { id: 'prod', budget: { total_tokens: 1000 } });
    expect(created.status).toBe(201);

    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${created.body.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5 }),
    });
    expect(response.status).toBe(200);
    const { usage } = (await response.json()) as { usage: { total_tokens: number } };
    expect(usage.total_tokens).toBeGreaterThan(5);
    // Reserved on the way in and settled with the real usage once the response ended: both are
    // batches of the SQLite writer thread.
    await within(2000, async () => (await admin('GET', '/admin/budgets/key:prod')).body.reserved_tokens === 0);
    const charged = await admin('GET', '/admin/budgets/key:prod');
    expect(charged.body).toMatchObject({ limit_tokens: 1000, spent_tokens: usage.total_tokens, reserved_tokens: 0 });

    gateway.process.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
    const problems = gateway.logs.filter((l) => ['warn', 'error', 'fatal', 'raw'].includes(String(l.level)));
    expect(problems).toEqual([]);
  }, 30_000);
});
