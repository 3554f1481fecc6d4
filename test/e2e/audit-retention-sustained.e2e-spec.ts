import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditRetentionJob } from '../../src/audit/audit-retention.job';
import { AuditRecord } from '../../src/audit/domain/audit-record';
import { loadAppConfig } from '../../src/app-config';
import { MetricsService } from '../../src/metrics/metrics.service';
import { openBackend } from '../../src/storage/open-backend';
import { BackendName, StorageBackend } from '../../src/storage/ports/storage-backend';
import { BackendEnv, E2E_BACKENDS, backendEnv } from './backends';

/**
 * Retention keeps pace with a write rate twice the old prune capacity (AUDIT_PRUNE_BATCH ×
 * AUDIT_PRUNE_MAX_BATCHES per interval was 50,000 rows a minute, 833 rows/s): for 2 minutes, each
 * backend gets 1,667 audit rows/s written straight through the audit port, with a 10 s retention and a
 * 2 s prune interval, while the retention job (the real one, with the default batch settings) prunes
 * it. All backends run at once, so the 2 minutes are paid once. The row count, sampled every 2 s, must
 * stay within rate × (retention + interval) × 1.2 throughout.
 */
const DURATION_MS = 120_000;
const RATE = 1667;
const RETENTION_SECS = 10;
const INTERVAL_SECS = 2;
const TICK_MS = 100;
const BOUND = Math.ceil(RATE * (RETENTION_SECS + INTERVAL_SECS) * 1.2);
/**
 * FerretDB 1.x (what the suite runs when no MongoDB is given) behind its one-command relay does not
 * take 1,667 inserts/s plus the deletes (its monitor connection times out); the MongoDB lane runs when
 * MONGODB_URI is a MongoDB server.
 */
const BACKENDS = E2E_BACKENDS.filter((backend) => backend !== 'mongodb' || process.env.TEST_FERRETDB_DIRECT_URI === undefined);

interface Lane {
  backend: string;
  store: BackendEnv;
  writer: StorageBackend;
  pruner: StorageBackend;
  job: AuditRetentionJob;
  scheduler: SchedulerRegistry;
  written: number;
  writeErrors: number;
  samples: number[];
}

function row(backend: string, n: number, ts: number): AuditRecord {
  return {
    id: `${ts.toString(36)}-${backend}-${n}`,
    ts,
    kind: 'proxy',
    requestId: `req-${n}`,
    keyId: `key-${n % 7}`,
    tenantId: n % 3 === 0 ? 'acme' : null,
    payload: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-4o-mini', status: 200, latency_ms: 12, usage: { total_tokens: 42 } },
  };
}

describe('audit retention under sustained writes (e2e, 2 minutes, every backend at once)', () => {
  const lanes: Lane[] = [];

  afterAll(async () => {
    for (const lane of lanes) {
      await lane.job.onApplicationShutdown();
      await lane.writer.close();
      await lane.pruner.close();
      await lane.store.cleanup();
    }
  });

  it(`keeps every store within ${BOUND} rows at ${RATE} rows/s with a ${RETENTION_SECS} s retention`, async () => {
    const env = { AUDIT_RETENTION_SECS: String(RETENTION_SECS), AUDIT_PRUNE_INTERVAL_SECS: String(INTERVAL_SECS) };
    if (BACKENDS.length < E2E_BACKENDS.length) console.log(`sustained audit writes: mongodb left out (${process.env.TEST_MONGODB_SERVER}: too slow for ${RATE} rows/s)`);
    for (const backend of BACKENDS) {
      const store = await backendEnv(backend);
      const config = loadAppConfig({ ...store.env, ...env });
      const writer = await openBackend(store.env.STORAGE_BACKEND as BackendName, config.storage.options);
      const pruner = await openBackend(store.env.STORAGE_BACKEND as BackendName, config.storage.options);
      const scheduler = new SchedulerRegistry();
      const job = new AuditRetentionJob(pruner.audit, pruner.locks, scheduler, config.audit, new MetricsService());
      lanes.push({ backend, store, writer, pruner, job, scheduler, written: 0, writeErrors: 0, samples: [] });
    }
    for (const lane of lanes) lane.job.onApplicationBootstrap();

    const started = Date.now();
    const writers = lanes.map(async (lane) => {
      let n = 0;
      while (Date.now() - started < DURATION_MS) {
        // Catch up to the rate from the start, so a slow append does not lower it.
        const due = Math.floor(((Date.now() - started) / 1000) * RATE) - n;
        if (due > 0) {
          const now = Date.now();
          const batch = Array.from({ length: due }, (_, i) => row(lane.backend, n + i, now));
          n += due;
          await lane.writer.audit.append(batch).then(
            () => (lane.written += batch.length),
            () => lane.writeErrors++,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, TICK_MS));
      }
    });
    const sampler = (async () => {
      while (Date.now() - started < DURATION_MS) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
        await Promise.all(lanes.map(async (lane) => lane.samples.push(await lane.writer.audit.count())));
      }
    })();
    await Promise.all([...writers, sampler]);

    const report = lanes.map((lane) => ({
      backend: lane.backend,
      written: lane.written,
      writeErrors: lane.writeErrors,
      maxRows: Math.max(...lane.samples),
      lastRows: lane.samples[lane.samples.length - 1],
    }));
    console.log(`sustained audit writes for ${DURATION_MS / 1000} s at ${RATE} rows/s (bound ${BOUND} rows):`, JSON.stringify(report));
    for (const lane of report) {
      // The rate was held (within 5 %), and nothing failed.
      expect(lane.written).toBeGreaterThan(RATE * (DURATION_MS / 1000) * 0.95);
      expect(lane.writeErrors).toBe(0);
      expect(lane.maxRows).toBeLessThanOrEqual(BOUND);
      // And the steady state is about rate × retention, not a slow growth under the bound.
      expect(lane.lastRows).toBeGreaterThan(RATE * RETENTION_SECS * 0.8);
    }
  }, DURATION_MS + 120_000);
});
