import { statSync } from 'node:fs';
import { Client } from 'pg';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { AuditRetentionJob } from '../../src/audit/audit-retention.job';
import { loadAppConfig } from '../../src/app-config';
import { MetricsService } from '../../src/metrics/metrics.service';
import { openBackend } from '../../src/storage/open-backend';
import { BackendName, StorageBackend } from '../../src/storage/ports/storage-backend';
import { BackendEnv, PG_DSN, backendEnv } from './backends';
import { RunningGateway, admin, startGateway, within } from './harness';

/**
 * A backlog of 1,000,000 expired audit rows, generated in the database (not through the API), is
 * pruned by the retention job with the default batch settings and a short interval: gone within two
 * runs (the old job deleted 50,000 rows a run: 20 runs). Meanwhile a client sends chat completions
 * one after the other; their median latency while the prune runs must stay within twice
 * the median once it is done (same gateway, same store). On SQLite the file must give the space back.
 */
const BACKLOG = 1_000_000;
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
    jest.setTimeout(300_000);
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
    await generateBacklog(backend, store.env, Date.now() - 2 * HOUR - BACKLOG);
    expect(await direct.audit.count()).toBe(BACKLOG);
    const bytesBefore = backend === 'sqlite' ? sqliteBytes(store.env.SQLITE_PATH) : 0;

    gateway = await startGateway({
      ...store.env,
      ADMIN_TOKEN: 'backlog-admin-token-0123456789',
      UPSTREAM_BASE_URL: upstream.url,
      UPSTREAM_API_KEY: 'sk-upstream-backlog-0123456789',
      AUDIT_RETENTION_SECS: '3600',
      AUDIT_PRUNE_INTERVAL_SECS: '3',
    });
    // A key without a budget: its requests need no storage round trip, so what they measure is whether
    // the prune holds up the gateway itself (on SQLite it used to run on the event loop). A budgeted
    // request on SQLite also waits for the prune's current write on the writer thread (docs/audit.md).
    const created = await admin(gateway, 'POST', '/admin/keys', { id: 'backlog', models: ['gpt-4o-mini'] }, 'backlog-admin-token-0123456789');
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
    for (let i = 0; i < 20; i++) await chat(); // warm-up

    // During: from the first deleted batch until the backlog is gone.
    await within(10_000, async () => (await prunedTotal(gateway)) > 0);
    const during: number[] = [];
    let gone = false;
    const watch = (async () => {
      while (!gone) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const oldest = await direct.audit.oldestTs();
        gone = oldest === null || oldest > Date.now() - HOUR;
      }
    })();
    const pruneStarted = Date.now();
    while (!gone && Date.now() - pruneStarted < 120_000) during.push(await chat());
    await watch;
    const pruneMs = Date.now() - pruneStarted;
    expect(gone).toBe(true);

    // The runs that deleted something, from the job's own log lines; let the last one finish first.
    const job = gateway.app.get(AuditRetentionJob);
    await job.tick();
    const runs = gateway.logs.map((l) => /^pruned (\d+) audit row/.exec(String(l.msg))).filter((m) => m !== null);

    // Idle: the same requests with nothing to prune.
    const idle: number[] = [];
    for (let i = 0; i < Math.max(200, Math.min(during.length, 1000)); i++) idle.push(await chat());
    const result = { during: { n: during.length, p50: median(during) }, idle: { n: idle.length, p50: median(idle) }, pruneMs, runs: runs.length };
    console.log(`${backend}: 1,000,000-row backlog pruned:`, JSON.stringify(result));
    expect(runs.reduce((sum, m) => sum + Number(m![1]), 0)).toBe(BACKLOG);
    expect(runs.length).toBeLessThanOrEqual(2);
    expect(during.length).toBeGreaterThanOrEqual(50);
    expect(result.during.p50).toBeLessThanOrEqual(2 * result.idle.p50);

    if (backend === 'sqlite') {
      // The pages the prune freed went back to the file system (incremental vacuum), not to a free list.
      const bytesAfter = sqliteBytes(store.env.SQLITE_PATH);
      console.log(`sqlite: ${bytesBefore} bytes with the backlog, ${bytesAfter} after the prune`);
      expect(bytesAfter).toBeLessThan(bytesBefore * 0.25);
    }
    // Nothing went wrong but, if a run ended with the hour-old backlog still there, the job saying it
    // was behind; once caught up, the lag gauge is back to 0.
    const errors = gateway.logs.filter((l) => l.level === 'error' || l.level === 'fatal').map((l) => String(l.msg));
    expect(errors.every((msg) => msg.startsWith('audit retention is behind: the oldest row is '))).toBe(true);
    const lag = gateway.app.get(MetricsService).registry.getSingleMetric('ditto_audit_retention_lag_seconds')!;
    expect((await lag.get()).values[0]?.value).toBe(0);
  }, 300_000);
});
