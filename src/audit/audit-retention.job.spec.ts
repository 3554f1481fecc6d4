import { Logger } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { loadAppConfig } from '../app-config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryAuditLogRepository } from '../storage/backends/memory/memory-audit-log.repository';
import { MemoryJobLock } from '../storage/backends/memory/memory-job-lock';
import { AuditRecord } from './domain/audit-record';
import { AuditRetentionJob } from './audit-retention.job';

const HOUR = 3_600_000;

function rows(count: number, ts: (i: number) => number): AuditRecord[] {
  return Array.from({ length: count }, (_, i) => ({ id: `r${String(i).padStart(6, '0')}`, ts: ts(i), kind: 'proxy', requestId: null, keyId: null, tenantId: null, payload: {} }));
}

/** A store whose oldest rows cannot be deleted (as if another process kept writing them back). */
class StuckRepository extends MemoryAuditLogRepository {
  override async deleteOlderThan(): Promise<number> {
    return 0;
  }
}

async function gauge(metrics: MetricsService, name: string): Promise<number | undefined> {
  return (await metrics.registry.getSingleMetric(name)!.get()).values[0]?.value;
}

describe('AuditRetentionJob', () => {
  const config = loadAppConfig({ STORAGE_BACKEND: 'memory', AUDIT_RETENTION_SECS: '3600', AUDIT_PRUNE_LAG_ALERT_SECS: '600' });
  let errors: jest.SpyInstance;

  beforeEach(() => {
    errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });

  afterEach(() => jest.restoreAllMocks());

  it('deletes a backlog beyond the old per-run cap (50,000 rows) in one run, then reports no lag', async () => {
    const repository = new MemoryAuditLogRepository();
    const now = Date.now();
    await repository.append(rows(60_000, (i) => now - 2 * HOUR + i));
    await repository.append(rows(10, (i) => now - HOUR / 2 + i).map((r) => ({ ...r, id: `young-${r.id}` })));
    const metrics = new MetricsService();
    const job = new AuditRetentionJob(repository, new MemoryJobLock(), new SchedulerRegistry(), config.audit, metrics);
    expect(await job.tick()).toEqual({ deleted: 60_000, more: false });
    expect(await repository.count()).toBe(10);
    expect(await gauge(metrics, 'ditto_audit_retention_lag_seconds')).toBe(0);
    expect(await gauge(metrics, 'ditto_audit_rows')).toBe(10);
    expect(errors).not.toHaveBeenCalled();
  }, 30_000);

  it('publishes the lag and logs one ERROR while rows stay past the retention', async () => {
    const repository = new StuckRepository();
    const now = Date.now();
    await repository.append(rows(5, (i) => now - HOUR - 900_000 + i));
    const metrics = new MetricsService();
    const job = new AuditRetentionJob(repository, new MemoryJobLock(), new SchedulerRegistry(), config.audit, metrics);
    await job.tick();
    await job.tick();
    const lag = (await gauge(metrics, 'ditto_audit_retention_lag_seconds'))!;
    expect(lag).toBeGreaterThan(899);
    expect(lag).toBeLessThan(960);
    expect(errors).toHaveBeenCalledTimes(1);
    expect(String(errors.mock.calls[0][0])).toMatch(/^audit retention is behind: the oldest row is 9\d\d s past the retention \(threshold 600 s, about 5 row\(s\) stored\)/);
  });
});
