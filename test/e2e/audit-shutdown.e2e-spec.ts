import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Pool } from 'undici';
import { openBackend } from '../../src/storage/open-backend';
import { loadAppConfig } from '../../src/app-config';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ChildGateway, errorLines, requireBuild, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN } from './harness';

const REQUESTS = 5000;
const CONCURRENCY = 64;

/**
 * docs/deployment.md: on SIGTERM the gateway stops accepting connections, finishes what is in flight (and
 * serves requests that arrive on open connections meanwhile), then flushes the audit queue before
 * closing storage. So every request that got an answer has its audit row, and only those.
 */
describe('SIGTERM during a burst (e2e, child process)', () => {
  let dir: string;
  let upstream: MockUpstream;
  let gateway: ChildGateway | undefined;

  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-sigterm-'));
    // A little upstream latency keeps requests in flight when the signal lands.
    upstream = await startMockUpstream({ delayMs: 3 });
  });

  afterAll(async () => {
    if (gateway && gateway.process.exitCode === null && gateway.process.signalCode === null) gateway.process.kill('SIGKILL');
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers or refuses each of 5,000 requests, and writes one proxy audit row per answered request', async () => {
    const env = {
      STORAGE_BACKEND: 'sqlite',
      SQLITE_PATH: path.join(dir, 'ditto.sqlite'),
      STORAGE_FALLBACK: 'false',
      ADMIN_TOKEN,
      UPSTREAM_BASE_URL: upstream.url,
      // A long flush interval: whatever is queued at SIGTERM must be written by the shutdown flush.
      AUDIT_FLUSH_MS: '5000',
      AUDIT_BATCH_SIZE: '1000',
      // Keep serving briefly after the signal (the grace period of docs/deployment.md, where implemented), so
      // the burst sees both: requests served after SIGTERM, and connections refused once it closes.
      SHUTDOWN_GRACE_MS: '1000',
    };
    gateway = await startChildGateway(env, dir);
    const created = await fetch(`${gateway.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'burst' }),
    });
    expect(created.status).toBe(201);
    const { token } = (await created.json()) as { token: string };

    const pool = new Pool(gateway.url, { connections: CONCURRENCY });
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 });
    const statuses = new Map<number, number>();
    let answered = 0;
    let answeredAfterSignal = 0;
    let failed = 0;
    let signalled = false;
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        next++;
        try {
          const response = await pool.request({
            method: 'POST',
            path: '/v1/chat/completions',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body,
          });
          answered++;
          if (signalled) answeredAfterSignal++;
          statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
          await response.body.dump();
        } catch {
          failed++;
        }
        if (!signalled && answered >= REQUESTS / 3) {
          signalled = true;
          gateway!.process.kill('SIGTERM');
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await pool.close().catch(() => undefined);
    const exit = await gateway.exited;

    expect(signalled).toBe(true);
    expect(answered + failed).toBe(REQUESTS);
    // The signal landed mid-burst: requests in flight then (and any sent during a grace period) were
    // still answered; whatever came after the server closed was refused (\`failed\`), never half-served.
    expect(answeredAfterSignal).toBeGreaterThan(0);
    // No 503 from a closing server: everything that was answered was served.
    expect([...statuses.keys()]).toEqual([200]);
    expect([0, 'SIGTERM']).toContain(exit);
    expect(errorLines(gateway.logs)).toEqual([]);

    const store = await openBackend('sqlite', loadAppConfig(env).storage.options);
    try {
      let rows = 0;
      for await (const batch of store.audit.scan({ kind: 'proxy*' }, 1000)) rows += batch.length;
      expect(rows).toBe(answered);
    } finally {
      await store.close();
    }
  }, 60_000);
});
