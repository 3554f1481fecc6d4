import { statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { Client } from 'pg';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { AUDIT_PRUNE_JOB, AuditRetentionJob } from '../../src/audit/audit-retention.job';
import { loadAppConfig } from '../../src/app-config';
import { MetricsService } from '../../src/metrics/metrics.service';
import { openBackend } from '../../src/storage/open-backend';
import { BackendName, StorageBackend } from '../../src/storage/ports/storage-backend';
import { BackendEnv, PG_DSN, backendEnv } from './backends';
import { RunningGateway, admin, startGateway } from './harness';

/**
 * A backlog of 1,000,000 expired audit rows, generated in the database (bulk SQL, not through the API),
 * is pruned by the retention job with the default batch settings and a short interval: gone within two
 * runs (the old job deleted 50,000 rows a run: 20 runs). Meanwhile a client sends chat completions one
 * after the other; their median latency while the prune runs (its deletes and, on SQLite, the vacuum
 * steps after them) must stay within twice the median of the same requests with nothing being pruned
 * (same gateway, same store, measured just before and just after the prune). On SQLite the file must
 * give the space back.
 */
const BACKLOG = 1_000_000;
/** Requests measured with nothing being pruned, before and again after the prune. */
const IDLE_REQUESTS = 300;
const WARM_UP_REQUESTS = 1000;
const ADMIN = 'backlog-admin-token-0123456789';
/** No types are installed for better-sqlite3 (TypeORM drives it); what the backlog needs of it. */
type SqliteDb = {
  prepare(sql: string): { run(...params: unknown[]): unknown };
  transaction(work: () => void): () => void;
  pragma(source: string): unknown;
  close(): void;
};
const Database = require('better-sqlite3') as new (file: string) => SqliteDb;
const HOUR = 3_600_000;
const PAYLOAD = JSON.stringify({
  method: 'POST',
  path: '/v1/chat/completions',
  model: 'gpt-4o-mini',
  backend: 'openai',
  status: 200,
  usage: { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 },
  charged: { tokens: 42, usd_micros: 25, basis: 'usage' },
  latency_ms: 180,
  stream: false,
});

async function generateBacklog(backend: 'sqlite' | 'postgres', env: Record<string, string>, oldest: number): Promise<void> {
  if (backend === 'postgres') {
    const client = new Client({ connectionString: PG_DSN });
    await client.connect();
    try {
      await client.query(
        `INSERT INTO "${env.POSTGRES_SCHEMA}"."audit_log" (id, ts, kind, request_id, key_id, tenant_id, payload)
         SELECT 'backlog-' || lpad(g::text, 7, '0'), $1::bigint + g, CASE WHEN g % 2 = 0 THEN 'proxy' ELSE 'proxy.blocked' END,
                'req-' || g, 'key-' || (g % 7), CASE WHEN g % 3 = 0 THEN 'acme' END, $2
           FROM generate_series(1, $3::int) g`,
        [oldest, PAYLOAD, BACKLOG],
      );
      await client.query(`ANALYZE "${env.POSTGRES_SCHEMA}"."audit_log"`);
    } finally {
      await client.end();
    }
    return;
  }
  const db = new Database(env.SQLITE_PATH);
  try {
    const insert = db.prepare('INSERT INTO audit_log (id, ts, kind, request_id, key_id, tenant_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?)');
    db.transaction(() => {
      for (let g = 1; g <= BACKLOG; g++) {
        insert.run(`backlog-${String(g).padStart(7, '0')}`, oldest + g, g % 2 ? 'proxy.blocked' : 'proxy', `req-${g}`, `key-${g % 7}`, g % 3 ? null : 'acme', PAYLOAD);
      }
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

/** Bytes of the SQLite database on disk: the file and its WAL. */
function sqliteBytes(file: string): number {
  const size = (f: string) => {
    try {
      return statSync(f).size;
    } catch {
      return 0;
    }
  };
  return size(file) + size(`${file}-wal`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const round = (ms: number) => Math.round(ms * 100) / 100;

async function prunedTotal(gateway: RunningGateway): Promise<number> {
  const metric = gateway.app.get(MetricsService).registry.getSingleMetric('ditto_audit_pruned_total')!;
  return (await metric.get()).values[0]?.value ?? 0;
}

describe.each(['sqlite', 'postgres'] as const)('audit retention of a 1,000,000-row backlog on %s (e2e)', (backend) => {
  let store: BackendEnv;
  let direct: StorageBackend;
  let upstream: MockUpstream;
  let gateway: RunningGateway;

  beforeAll(async () => {
    store = await backendEnv(backend);
    // Creates and migrates the store.
    direct = await openBackend(backend as BackendName, loadAppConfig(store.env).storage.options);
    upstream = await startMockUpstream();
  });

  afterAll(async () => {
    await gateway?.close();
    await direct?.close();
    await upstream?.close();
    await store?.cleanup();
  });

  it('is gone within two runs, and requests meanwhile keep their median latency within 2× of idle', async () => {
    const generated = Date.now();
    await generateBacklog(backend, store.env, Date.now() - 2 * HOUR - BACKLOG);
    const generateMs = Date.now() - generated;
    expect(await direct.audit.count()).toBe(BACKLOG);
    const bytesBefore = backend === 'sqlite' ? sqliteBytes(store.env.SQLITE_PATH) : 0;

    // The test holds the prune's lock while it measures the idle gateway: the gateway's runs (every 3 s)
    // find it held and skip, until it is let go.
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    let lockTaken!: () => void;
    const taken = new Promise<void>((resolve) => (lockTaken = resolve));
    const holding = direct.locks.runExclusive(AUDIT_PRUNE_JOB, 600_000, async () => {
      lockTaken();
      await held;
    });
    await taken;

    gateway = await startGateway({
      ...store.env,
      ADMIN_TOKEN: ADMIN,
      UPSTREAM_BASE_URL: upstream.url,
      UPSTREAM_API_KEY: 'sk-upstream-backlog-0123456789',
      AUDIT_RETENTION_SECS: '3600',
      AUDIT_PRUNE_INTERVAL_SECS: '3',
    });
    // Every request reserves and settles on its key's scope (spend is metered without a budget too):
    // on SQLite those are writes on the writer thread the prune's deletes and vacuum steps go through.
    const created = await admin(gateway, 'POST', '/admin/keys', { id: 'backlog', models: ['gpt-4o-mini'] }, ADMIN);
    expect(created.status).toBe(201);
    const chat = async (): Promise<number> => {
      const started = performance.now();
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${created.body.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5 }),
      });
      await response.text();
      expect(response.status).toBe(200);
      return performance.now() - started;
    };
    // Warm-up: the first thousand requests of a new gateway get faster as V8 compiles its hot paths.
    for (let i = 0; i < WARM_UP_REQUESTS; i++) await chat();

    const idleBefore: number[] = [];
    for (let i = 0; i < IDLE_REQUESTS; i++) idleBefore.push(await chat());
    expect(await prunedTotal(gateway)).toBe(0);
    letGo();
    await holding;

    // During: from the first deleted batch until the job is done (every row gone and, on SQLite, the
    // freed pages given back). The watcher reads the job's own counter: no queries of the test's.
    const job = gateway.app.get(AuditRetentionJob);
    const pruneStarted = Date.now();
    while ((await prunedTotal(gateway)) === 0) {
      if (Date.now() - pruneStarted > 10_000) throw new Error('no prune run started within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const firstBatch = Date.now();
    let done = false;
    let goneMs = 0;
    const watch = (async () => {
      // Two runs of at most 120 s each, and a margin.
      const deadline = firstBatch + 300_000;
      while ((await prunedTotal(gateway)) < BACKLOG && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      goneMs = Date.now() - firstBatch;
      // Joins the run in progress, then any run it left work for (its vacuum steps, or rows).
      while ((await job.tick()).more && Date.now() < deadline);
      done = true;
    })();
    const during: number[] = [];
    while (!done) during.push(await chat());
    await watch;
    const pruneMs = Date.now() - firstBatch;
    expect(await prunedTotal(gateway)).toBe(BACKLOG);
    const oldest = await direct.audit.oldestTs();
    expect(oldest === null || oldest > Date.now() - HOUR).toBe(true);

    const idleAfter: number[] = [];
    for (let i = 0; i < IDLE_REQUESTS; i++) idleAfter.push(await chat());
    const idle = [...idleBefore, ...idleAfter];

    // The runs that deleted something, from the job's own log lines.
    const runs = gateway.logs
      .map((l) => /^pruned (\d+) audit row\(s\) older than \S+ in (\d+) ms/.exec(String(l.msg)))
      .filter((m) => m !== null)
      .map((m) => ({ rows: Number(m[1]), ms: Number(m[2]) }));
    const bytesAfter = backend === 'sqlite' ? sqliteBytes(store.env.SQLITE_PATH) : 0;
    const result = {
      generateMs,
      runs,
      goneMs,
      pruneMs,
      rowsPerSec: Math.round(BACKLOG / (goneMs / 1000)),
      p50: { during: round(median(during)), idle: round(median(idle)), idleBefore: round(median(idleBefore)), idleAfter: round(median(idleAfter)) },
      requests: { during: during.length, idle: idle.length },
      ...(backend === 'sqlite' ? { bytesBefore, bytesAfter } : {}),
      loadavg: loadavg().map((l) => Math.round(l * 10) / 10),
    };
    console.log(`${backend}: 1,000,000-row backlog pruned: ${JSON.stringify(result)}`);
    expect(runs.reduce((sum, run) => sum + run.rows, 0)).toBe(BACKLOG);
    expect(runs.length).toBeLessThanOrEqual(2);
    expect(during.length).toBeGreaterThanOrEqual(200);
    expect(median(during)).toBeLessThanOrEqual(2 * median(idle));

    if (backend === 'sqlite') {
      // The pages the prune freed went back to the file system (incremental vacuum), not to a free list.
      expect(bytesAfter).toBeLessThan(bytesBefore * 0.25);
    }
    // Nothing went wrong but, if a run ended with the hour-old backlog still there, the job saying it
    // was behind; once caught up, the lag gauge is back to 0.
    const errors = gateway.logs.filter((l) => l.level === 'error' || l.level === 'fatal').map((l) => String(l.msg));
    expect(errors.every((msg) => msg.startsWith('audit retention is behind: the oldest row is '))).toBe(true);
    const lag = gateway.app.get(MetricsService).registry.getSingleMetric('ditto_audit_retention_lag_seconds')!;
    expect((await lag.get()).values[0]?.value).toBe(0);
  }, 420_000);
});
