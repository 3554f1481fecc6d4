import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditRetentionJob } from '../../src/audit/audit-retention.job';
import { AuditRecord } from '../../src/audit/domain/audit-record';
import { loadAppConfig } from '../../src/app-config';
import { MetricsService } from '../../src/metrics/metrics.service';
import { openBackend } from '../../src/storage/open-backend';
import { BackendName, StorageBackend } from '../../src/storage/ports/storage-backend';
import { BackendEnv, backendEnv } from './backends';
import { RunningGateway, startGateway, within } from './harness';

const BACKENDS = ['sqlite', 'postgres', 'redis'] as const;
const HOUR = 3_600_000;

function rows(prefix: string, count: number, ts: (i: number) => number): AuditRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${String(i).padStart(5, '0')}`,
    ts: ts(i),
    kind: i % 2 ? 'proxy' : 'admin.key.update',
    requestId: `r-${i}`,
    keyId: `k-${i % 5}`,
    tenantId: i % 3 ? 't' : null,
    payload: { i },
  }));
}

async function prunedTotal(gateway: RunningGateway): Promise<number> {
  const metric = gateway.app.get(MetricsService).registry.getSingleMetric('ditto_audit_pruned_total')!;
  return (await metric.get()).values[0]?.value ?? 0;
}

function problems(gateway: RunningGateway) {
  return gateway.logs.filter((l) => l.level === 'error' || l.level === 'fatal' || l.level === 'warn');
}

/** The "pruned N audit row(s)" counts a gateway logged. */
function loggedPrunes(gateway: RunningGateway): number {
  return gateway.logs
    .map((l) => /^pruned (\d+) audit row/.exec(String(l.msg)))
    .reduce((sum, m) => sum + (m ? Number(m[1]) : 0), 0);
}

describe.each(BACKENDS)('audit retention on %s (e2e)', (backend) => {
  let store: BackendEnv;
  let direct: StorageBackend;
  const gateways: RunningGateway[] = [];
  const start = async (env: Record<string, string>) => {
    const gateway = await startGateway({ ...store.env, ...env });
    gateways.push(gateway);
    return gateway;
  };

  beforeEach(async () => {
    store = await backendEnv(backend);
    direct = await openBackend(store.env.STORAGE_BACKEND as BackendName, loadAppConfig(store.env).storage.options);
  });

  afterEach(async () => {
    for (const gateway of gateways.splice(0)) await gateway.close();
    await direct?.close();
    await store?.cleanup();
  });

  it('deletes rows older than AUDIT_RETENTION_SECS at the next tick and keeps younger ones', async () => {
    const now = Date.now();
    await direct.audit.append(rows('old', 300, (i) => now - 2 * HOUR - i * 1000));
    await direct.audit.append(rows('young', 50, (i) => now - HOUR / 2 + i));
    const gateway = await start({ AUDIT_RETENTION_SECS: '3600', AUDIT_PRUNE_INTERVAL_SECS: '1' });
    const elapsed = await within(4000, async () => (await direct.audit.count()) === 50);
    expect(elapsed).toBeLessThan(2500);
    const left = (await direct.audit.query({}, 1000, null)).items.map((r) => r.id);
    expect(left.every((id) => id.startsWith('young-'))).toBe(true);
    // The rows are gone once the store has committed the delete; the job counts them when its answer
    // reaches it (on SQLite, a message back from the writer thread), which may be a moment later.
    await within(2000, async () => (await prunedTotal(gateway)) >= 300);
    expect(await prunedTotal(gateway)).toBe(300);
    // The job logs its total once it has let go of the job lock (on postgres one more round trip).
    await within(2000, () => loggedPrunes(gateway) >= 300);
    expect(loggedPrunes(gateway)).toBe(300);
    expect(problems(gateway)).toEqual([]);
  });

  it('two instances pruning the same store at once delete every old row exactly once, without errors', async () => {
    const now = Date.now();
    const OLD = 2000;
    await direct.audit.append(rows('old', OLD, (i) => now - 2 * HOUR - i));
    await direct.audit.append(rows('young', 100, (i) => now - HOUR / 2 + i));
    // Small batches so that pruning takes several runs, on both instances' timers (the job is behind
    // by an hour meanwhile, on purpose: no lag alert).
    const env = {
      AUDIT_RETENTION_SECS: '3600',
      AUDIT_PRUNE_INTERVAL_SECS: '1',
      AUDIT_PRUNE_BATCH: '100',
      AUDIT_PRUNE_MAX_BATCHES: '3',
      AUDIT_PRUNE_LAG_ALERT_SECS: '86400',
    };
    const [a, b] = [await start(env), await start(env)];
    const jobs = [a, b].map((g) => g.app.get(AuditRetentionJob));
    // And runs started at the same moment on both, beside the scheduled ones.
    const deletedByRuns: number[] = [];
    await within(15_000, async () => {
      const [x, y] = await Promise.all(jobs.map((job) => job.tick()));
      deletedByRuns.push(x.deleted, y.deleted);
      return (await direct.audit.count()) === 100;
    });
    await Promise.all(jobs.map((job) => job.tick()));
    expect(await direct.audit.count()).toBe(100);
    expect((await direct.audit.query({}, 1000, null)).items.every((r) => r.id.startsWith('young-'))).toBe(true);
    const [prunedA, prunedB] = [await prunedTotal(a), await prunedTotal(b)];
    expect(prunedA + prunedB).toBe(OLD);
    expect(loggedPrunes(a) + loggedPrunes(b)).toBe(OLD);
    // A run never exceeds its cap (AUDIT_PRUNE_BATCH × AUDIT_PRUNE_MAX_BATCHES).
    expect(Math.max(...deletedByRuns)).toBeLessThanOrEqual(300);
    expect(problems(a)).toEqual([]);
    expect(problems(b)).toEqual([]);
  });
});

describe('audit retention disabled (e2e)', () => {
  let store: BackendEnv;
  let gateway: RunningGateway;

  beforeAll(async () => {
    store = await backendEnv('sqlite');
  });

  afterAll(async () => {
    await gateway?.close();
    await store?.cleanup();
  });

  it('AUDIT_RETENTION_SECS=0 keeps everything and schedules nothing', async () => {
    const direct = await openBackend('sqlite', loadAppConfig(store.env).storage.options);
    await direct.audit.append(rows('ancient', 100, (i) => 1_000_000_000_000 + i));
    await direct.close();
    gateway = await startGateway({ ...store.env, AUDIT_RETENTION_SECS: '0', AUDIT_PRUNE_INTERVAL_SECS: '1' });
    expect(gateway.app.get(SchedulerRegistry).doesExist('interval', 'audit-prune')).toBe(false);
    expect(gateway.logs.some((l) => String(l.msg).includes('audit retention disabled'))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const reopened = await openBackend('sqlite', loadAppConfig(store.env).storage.options);
    expect(await reopened.audit.count()).toBe(100);
    await reopened.close();
  });
});
