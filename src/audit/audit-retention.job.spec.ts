import { Logger } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { loadAppConfig } from '../app-config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryAuditLogRepository } from '../storage/backends/memory/memory-audit-log.repository';
import { MemoryJobLock } from '../storage/backends/memory/memory-job-lock';
import { JobLease, JobLock, JobLockResult } from '../storage/ports/job-lock';
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

/**
 * An endless backlog whose batches keep the store busy `batchMs` each and whose free space takes
 * `reclaimSteps` vacuum steps of `stepMs` (timers: the specs below run on Jest's fake clock).
 */
class TimedRepository extends MemoryAuditLogRepository {
  busyMs = 0;
  batches = 0;
  steps = 0;
  constructor(
    private readonly batchMs: number,
    private backlog: number,
    private reclaimSteps = 0,
    private readonly stepMs = 0,
  ) {
    super();
  }
  override async deleteOlderThan(_cutoff: number, maxRows: number): Promise<number> {
    await new Promise((resolve) => setTimeout(resolve, this.batchMs));
    this.busyMs += this.batchMs;
    this.batches++;
    const n = Math.min(maxRows, this.backlog);
    this.backlog -= n;
    return n;
  }
  override async reclaimStep(): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, this.stepMs));
    this.busyMs += this.stepMs;
    this.steps++;
    return --this.reclaimSteps > 0;
  }
}

/** The memory store with `batchMs` of (fake) time per delete batch; records when each batch started and its cutoff. */
class SlowRepository extends MemoryAuditLogRepository {
  batches: Array<{ at: number; cutoff: number; rows: number }> = [];
  constructor(private readonly batchMs: number) {
    super();
  }
  override async deleteOlderThan(cutoff: number, maxRows: number): Promise<number> {
    const at = Date.now();
    await new Promise((resolve) => setTimeout(resolve, this.batchMs));
    const rows = await super.deleteOlderThan(cutoff, maxRows);
    this.batches.push({ at, cutoff, rows });
    return rows;
  }
}

/** A lock that is always free and counts the renewals of its lease, which answer `renewed`. */
class CountingLock extends JobLock {
  renewals: number[] = [];
  constructor(private readonly renewed = true) {
    super();
  }
  async runExclusive<T>(_name: string, _ttlMs: number, work: (lease: JobLease) => Promise<T>): Promise<JobLockResult<T>> {
    return { ran: true, value: await work({ renew: async () => (this.renewals.push(Date.now()), this.renewed) }) };
  }
}

/** Advances the fake clock until `promise` has settled; answers the fake time that took. */
async function settle<T>(promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  let done = false;
  void promise.finally(() => (done = true)).catch(() => undefined);
  while (!done) await jest.advanceTimersByTimeAsync(50);
  return { value: await promise, ms: Date.now() - start };
}

async function gauge(metrics: MetricsService, name: string): Promise<number | undefined> {
  return (await metrics.registry.getSingleMetric(name)!.get()).values[0]?.value;
}

describe('AuditRetentionJob', () => {
  const config = loadAppConfig({ STORAGE_BACKEND: 'memory', AUDIT_RETENTION_SECS: '3600', AUDIT_PRUNE_LAG_ALERT_SECS: '600' });
  let errors: jest.SpyInstance;
  let warnings: jest.SpyInstance;

  beforeEach(() => {
    errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    warnings = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

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

  describe('pace (fake clock)', () => {
    beforeEach(() => jest.useFakeTimers({ now: Date.now() }));

    it('keeps the store busy a quarter of the time by default, renews its lease every 20 s, and stops on its 120 s budget', async () => {
      const repository = new TimedRepository(100, Number.MAX_SAFE_INTEGER);
      const lock = new CountingLock();
      const job = new AuditRetentionJob(repository, lock, new SchedulerRegistry(), config.audit, new MetricsService());
      const { value, ms } = await settle(job.tick());
      await job.onApplicationShutdown();
      expect(value.more).toBe(true);
      // A batch of 100 ms, then 300 ms of rest: 300 batches in the 120 s budget.
      expect(ms).toBeGreaterThanOrEqual(120_000);
      expect(ms).toBeLessThan(121_000);
      expect(repository.busyMs / ms).toBeCloseTo(0.25, 2);
      // At 20, 40, … 120 s (the last one before the check that ends the run): never 40 s without one
      // (the lease is 60 s).
      expect(lock.renewals.length).toBe(6);
      expect(lock.renewals.every((at, i) => at - (i === 0 ? Date.now() - ms : lock.renewals[i - 1]) <= 20_400)).toBe(true);
    });

    it('takes the share AUDIT_PRUNE_DUTY_PERCENT gives it (100: no rest)', async () => {
      for (const [percent, share] of [
        ['50', 0.5],
        ['100', 1],
      ] as const) {
        const repository = new TimedRepository(100, 50 * 5000);
        const duty = loadAppConfig({ STORAGE_BACKEND: 'memory', AUDIT_RETENTION_SECS: '3600', AUDIT_PRUNE_DUTY_PERCENT: percent, AUDIT_PRUNE_BATCH: '5000' });
        const job = new AuditRetentionJob(repository, new CountingLock(), new SchedulerRegistry(), duty.audit, new MetricsService());
        // The sizer keeps batches at 5000 rows here (100 ms each, its target): 51 batches, the last one
        // short, then one for the rows that expired since the job started (none left).
        const { value, ms } = await settle(job.tick());
        expect(value).toEqual({ deleted: 50 * 5000, more: false });
        expect(repository.batches).toBe(52);
        expect(repository.busyMs / ms).toBeCloseTo(share, 1);
        await job.onApplicationShutdown();
      }
    });

    it('paces the rows expired before it started, and deletes those that expired since without pause', async () => {
      const repository = new SlowRepository(100);
      const start = Date.now();
      // 20,000 rows expired an hour before the job starts, and 20,000 that expire in its first minute.
      await repository.append(rows(20_000, (i) => start - 2 * HOUR + i));
      await repository.append(rows(20_000, (i) => start - HOUR + 1 + i * 2).map((r) => ({ ...r, id: `later-${r.id}` })));
      const job = new AuditRetentionJob(repository, new CountingLock(), new SchedulerRegistry(), config.audit, new MetricsService());
      await jest.advanceTimersByTimeAsync(60_000);
      const { value } = await settle(job.tick());
      await job.onApplicationShutdown();
      expect(value).toEqual({ deleted: 40_000, more: false });
      expect(await repository.count()).toBe(0);
      const gaps = (cutoff: number) => {
        const at = repository.batches.filter((b) => b.cutoff === cutoff && b.rows > 0).map((b) => b.at);
        return at.slice(1).map((t, i) => t - at[i]);
      };
      // Batches of 5000 rows (100 ms, the sizer's target): the backlog's 300 ms apart after each, the inflow's back to back.
      const backlog = gaps(start - HOUR);
      const inflow = gaps(start + 60_000 - HOUR);
      expect(backlog).toHaveLength(3);
      expect(inflow).toHaveLength(3);
      expect(backlog.every((gap) => gap >= 400)).toBe(true);
      expect(inflow.every((gap) => gap < 200)).toBe(true);
    });

    it('ends the run when its lease was lost, with a WARN, and leaves the rest to the next run', async () => {
      const repository = new TimedRepository(100, Number.MAX_SAFE_INTEGER);
      const lock = new CountingLock(false);
      const job = new AuditRetentionJob(repository, lock, new SchedulerRegistry(), config.audit, new MetricsService());
      const { value, ms } = await settle(job.tick());
      await job.onApplicationShutdown();
      expect(value.more).toBe(true);
      expect(lock.renewals.length).toBe(1);
      expect(ms).toBeGreaterThanOrEqual(20_000);
      expect(ms).toBeLessThan(21_000);
      expect(warnings).toHaveBeenCalledWith(expect.stringMatching(/^audit prune: the lock's lease lapsed before it was renewed/));
    });

    it('gives the freed space back once the rows are gone, paced like the batches', async () => {
      const repository = new TimedRepository(100, 12_000, 40, 100);
      const job = new AuditRetentionJob(repository, new CountingLock(), new SchedulerRegistry(), config.audit, new MetricsService());
      const { value, ms } = await settle(job.tick());
      await job.onApplicationShutdown();
      expect(value).toEqual({ deleted: 12_000, more: false });
      expect(repository.steps).toBe(40);
      expect(repository.busyMs / ms).toBeCloseTo(0.25, 1);
    });

    it('stops in the middle of a rest at shutdown, without waiting it out', async () => {
      const repository = new TimedRepository(10_000, Number.MAX_SAFE_INTEGER);
      const job = new AuditRetentionJob(repository, new CountingLock(), new SchedulerRegistry(), config.audit, new MetricsService());
      const run = job.tick();
      // In the 30 s rest after the first batch.
      await jest.advanceTimersByTimeAsync(12_000);
      expect(repository.batches).toBe(1);
      const { ms } = await settle(job.onApplicationShutdown());
      expect(ms).toBeLessThan(100);
      expect((await run).deleted).toBe(repository.batches * 5000);
      expect(repository.batches).toBe(1);
    });
  });
});
