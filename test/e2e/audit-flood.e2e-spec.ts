import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { Pool, WebSocket } from 'undici';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { BackendEnv, backendEnv } from './backends';
import { ChildGateway, requireBuild, rssBytes, sampleRss, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN, freePort, within } from './harness';

const MB = 1024 * 1024;
const QUEUE_MAX_BYTES = 4 * MB;
const REQUESTS = 80;
const CONCURRENCY = 8;
/** docs/audit.md: the memory a full queue holds stays below 2 × AUDIT_QUEUE_MAX_BYTES + 32 MB. */
const CEILING = 2 * QUEUE_MAX_BYTES + 32 * MB;

/** A full garbage collection in the child, through its inspector (what remains is what is held). */
async function collectGarbage(inspectorPort: number): Promise<void> {
  const [target] = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve);
    socket.addEventListener('error', reject);
  });
  for (let id = 1; id <= 2; id++) {
    const done = new Promise((resolve) => socket.addEventListener('message', function reply(event) {
      if (JSON.parse(String(event.data)).id === id) {
        socket.removeEventListener('message', reply);
        resolve(undefined);
      }
    }));
    socket.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
    await done;
  }
  socket.close();
}

async function metric(gateway: ChildGateway, line: RegExp): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return Number(line.exec(text)?.[1] ?? NaN);
}

/**
 * A flood of large bodies while the audit store does not answer (the audit table is locked: the
 * proxy's own storage keeps working, audit writes wait). Before AUDIT_QUEUE_MAX_BYTES, the queue held
 * up to AUDIT_QUEUE_MAX (50,000) events of up to 128 KiB each, and each kept its whole request body
 * alive through the 64 KiB head logged of it: the heap grew with every request until the process died.
 */
describe('audit queue under a flood of large bodies while the store stalls (e2e, child process)', () => {
  let dir: string;
  let store: BackendEnv;
  let upstream: MockUpstream;
  let gateway: ChildGateway | undefined;
  let lock: Client | undefined;

  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-flood-'));
    store = await backendEnv('postgres');
    upstream = await startMockUpstream();
  });

  afterAll(async () => {
    await lock?.end().catch(() => undefined);
    if (gateway && gateway.process.exitCode === null) {
      gateway.process.kill('SIGTERM');
      await gateway.exited;
    }
    await upstream?.close();
    await store?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the queued bytes under AUDIT_QUEUE_MAX_BYTES and the memory it holds under its documented ceiling, counts the overflow, and writes the rest once the store answers', async () => {
    const inspectorPort = await freePort();
    gateway = await startChildGateway(
      {
        ...store.env,
        ADMIN_TOKEN,
        UPSTREAM_BASE_URL: upstream.url,
        AUDIT_LOG_BODIES: 'true',
        AUDIT_QUEUE_MAX_BYTES: String(QUEUE_MAX_BYTES),
        AUDIT_FLUSH_MS: '50',
        AUDIT_RETENTION_SECS: '0',
        // The inspector only to trigger full garbage collections (collectGarbage).
        NODE_OPTIONS: `--inspect=127.0.0.1:${inspectorPort}`,
      },
      dir,
    );
    const created = await fetch(`${gateway.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'flood' }),
    });
    const { token } = (await created.json()) as { token: string };
    const pool = new Pool(gateway.url, { connections: CONCURRENCY });
    const send = async (body: string) => {
      const response = await pool.request({
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      });
      await response.body.dump();
      return response.statusCode;
    };
    // Two shapes: 512 KiB of text (the event keeps a 64 KiB head of it), and 60 KB of JSON that is a
    // megabyte of objects once parsed (the event keeps it parsed).
    const text = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 1, messages: [{ role: 'user', content: 'hello world '.repeat(MB / 24) }] });
    const objects = `{"model":"gpt-4o-mini","max_tokens":1,"messages":[{"role":"user","content":"hi"}],"x":[${'{},'.repeat(19_999)}{}]}`;

    // Warm-up (JIT, pools), then the baseline: what the process holds with an empty queue.
    for (let i = 0; i < 4; i++) expect(await send(i % 2 ? text : objects)).toBe(200);
    await within(5000, async () => (await metric(gateway!, /^ditto_audit_queue_depth (\d+)$/m)) === 0);
    await collectGarbage(inspectorPort);
    const before = rssBytes(gateway.pid);

    lock = new Client({ connectionString: store.env.POSTGRES_DSN });
    await lock.connect();
    await lock.query('BEGIN');
    await lock.query(`LOCK TABLE "${store.env.POSTGRES_SCHEMA}".audit_log IN ACCESS EXCLUSIVE MODE`);

    const sampler = sampleRss(gateway.pid);
    let next = 0;
    let maxQueued = 0;
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < REQUESTS) {
          const i = next++;
          statuses.push(await send(i % 2 ? text : objects));
          // The mock keeps every request it got: forget them, this test measures the gateway.
          upstream.requests.length = 0;
          if (i % 10 === 0) maxQueued = Math.max(maxQueued, await metric(gateway!, /^ditto_audit_queue_bytes (\d+)$/m));
        }
      }),
    );
    const peak = sampler.stop() - before;
    await pool.close();
    maxQueued = Math.max(maxQueued, await metric(gateway, /^ditto_audit_queue_bytes (\d+)$/m));
    // What the full queue holds: the process after a full collection, against the baseline.
    await collectGarbage(inspectorPort);
    const held = rssBytes(gateway.pid) - before;
    console.log(`flood: ${REQUESTS} requests, RSS held +${Math.round(held / MB)} MB (ceiling ${CEILING / MB} MB), peak +${Math.round(peak / MB)} MB`);

    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(maxQueued).toBeGreaterThan(QUEUE_MAX_BYTES / 2);
    expect(maxQueued).toBeLessThanOrEqual(QUEUE_MAX_BYTES);
    const overflow = await metric(gateway, /^ditto_audit_dropped_total\{reason="queue_bytes"\} (\d+)$/m);
    expect(overflow).toBeGreaterThan(0);
    expect(held).toBeLessThan(CEILING);

    // The store answers again: everything still queued is written, nothing else is lost.
    await lock.query('COMMIT');
    await within(10_000, async () => (await metric(gateway!, /^ditto_audit_queue_depth (\d+)$/m)) === 0);
    const rows = await lock.query(`SELECT count(*)::int AS n FROM "${store.env.POSTGRES_SCHEMA}".audit_log WHERE kind LIKE 'proxy%'`);
    expect(rows.rows[0].n + overflow).toBe(REQUESTS + 4);
  }, 60_000);
});
