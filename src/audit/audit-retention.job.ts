import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { Counter, Gauge } from 'prom-client';
import type { ConfigType } from '@nestjs/config';
import { auditConfig } from './audit.config';
import { PruneBatchSizer } from './prune-batch-sizer';
import { MetricsService } from '../metrics/metrics.service';
import { JobLease, JobLock } from '../storage/ports/job-lock';
import { AuditLogRepository } from '../storage/ports/audit-log.repository';

export const AUDIT_PRUNE_JOB = 'audit-prune';
/** Lease of the prune lock: if a replica dies while pruning, another may prune after this long. */
const LOCK_TTL_MS = 60_000;
/** A run renews its lease between two batches once this much of it has passed. */
const RENEW_AFTER_MS = LOCK_TTL_MS / 3;
/** A run stops starting new batches (and vacuum steps) after this long; the next run starts at once
 * when rows or free pages are left. Long enough that a large backlog goes in a run or two at a paced
 * rate (docs/audit.md); it bounds how stale the lag and row gauges get meanwhile. */
const RUN_BUDGET_MS = 120_000;
/** What one delete batch should take: short enough that the store's other work never waits long behind it. */
const BATCH_TARGET_MS = 100;
/** Below this a batch's fixed cost (round trip, statement, commit) would dominate, above all on a busy
 * machine where a batch's time is mostly waiting: the sizer never goes lower (unless AUDIT_PRUNE_BATCH does). */
const MIN_BATCH = 1000;
const MAX_BATCH = 100_000;
/** The lag ERROR is repeated at most this often while it lasts. */
const LAG_ALERT_EVERY_MS = 5 * 60_000;

export interface PruneRun {
  /** Rows removed, whole partitions included. */
  deleted: number;
  /** True when the run stopped on its time budget or row cap with expired rows left: the next starts at once. */
  more: boolean;
}

/**
 * Retention (docs/audit.md). Every AUDIT_PRUNE_INTERVAL_SECS, under the `audit-prune` JobLock (one
 * replica at a time): readies the store's own expiry (PostgreSQL partitions ahead, MongoDB's TTL
 * index), drops what expired whole (partitions), then deletes expired rows in batches until none is
 * left or the run's time budget is spent, then gives the freed space back (SQLite's vacuum steps). A
 * batch's size follows the time batches take (PruneBatchSizer). Rows that had expired already when
 * the job started (a backlog: retention just enabled or lowered, old rows imported) go first, and
 * after each of their batches (and each vacuum step) the run waits so that it keeps the store busy at
 * most AUDIT_PRUNE_DUTY_PERCENT of the time: the requests' own writes and reads share the store (on
 * SQLite, its one writer thread) and the machine's cores with it. Rows that expired since are the
 * steady inflow and go without pause: pausing for them would only defer them, and on a store too slow
 * to keep up within its share the table would grow without bound. The lease of the lock is renewed as
 * the run goes. A run cut short is followed by the next one at once.
 * After each run the lag (age of the oldest row beyond the retention) and the row count are
 * published, and a lag beyond AUDIT_PRUNE_LAG_ALERT_SECS is logged as an ERROR.
 */
@Injectable()
export class AuditRetentionJob implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(AuditRetentionJob.name);
  private readonly pruned: Counter;
  private readonly lag: Gauge;
  private readonly rows: Gauge;
  private readonly sizer: PruneBatchSizer;
  private running: Promise<PruneRun> | null = null;
  private stopping = false;
  /** Ends a pause between two batches at shutdown. */
  private readonly stopped = new AbortController();
  /** Free space a run deleted and did not give back yet (its budget ran out first). */
  private reclaimPending = false;
  private lastLagAlert = 0;
  /** Rows older than this (expired when the job was created) are the backlog, deleted at the paced rate. */
  private readonly backlogBefore: number;

  constructor(
    private readonly repository: AuditLogRepository,
    private readonly lock: JobLock,
    private readonly scheduler: SchedulerRegistry,
    @Inject(auditConfig.KEY) private readonly config: ConfigType<typeof auditConfig>,
    metrics: MetricsService,
  ) {
    this.pruned = metrics.counter('ditto_audit_pruned_total', 'Audit rows deleted by the retention job (this instance)');
    this.lag = metrics.gauge('ditto_audit_retention_lag_seconds', 'Age of the oldest audit row minus the retention (0 when caught up), as of the last prune run');
    this.rows = metrics.gauge('ditto_audit_rows', 'Audit rows in the store (approximate), as of the last prune run');
    this.sizer = new PruneBatchSizer(config.pruneBatch, BATCH_TARGET_MS, Math.min(MIN_BATCH, config.pruneBatch), MAX_BATCH);
    this.backlogBefore = Date.now() - config.retentionSecs * 1000;
  }

  onApplicationBootstrap(): void {
    const { retentionSecs, pruneIntervalSecs } = this.config;
    if (retentionSecs === 0) {
      this.logger.log('audit retention disabled (AUDIT_RETENTION_SECS=0): rows are kept for ever');
      return;
    }
    const handle = setInterval(() => void this.tick(), pruneIntervalSecs * 1000);
    this.scheduler.addInterval(AUDIT_PRUNE_JOB, handle);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopping = true;
    this.stopped.abort();
    if (this.scheduler.doesExist('interval', AUDIT_PRUNE_JOB)) this.scheduler.deleteInterval(AUDIT_PRUNE_JOB);
    // Storage closes after this hook: let a run in progress finish its batch first.
    await this.running;
  }

  /** One run (also what the interval calls). Never rejects; a run still in progress is not overlapped. */
  tick(): Promise<PruneRun> {
    this.running ??= this.run().finally(() => (this.running = null));
    return this.running;
  }

  private async run(): Promise<PruneRun> {
    const now = Date.now();
    const retentionMs = this.config.retentionSecs * 1000;
    const cutoff = now - retentionMs;
    let outcome: PruneRun = { deleted: 0, more: false };
    try {
      const result = await this.lock.runExclusive(AUDIT_PRUNE_JOB, LOCK_TTL_MS, (lease) => this.prune(cutoff, retentionMs, now, lease));
      if (result.ran) outcome = result.value;
      if (outcome.deleted > 0) {
        this.logger.log(
          `pruned ${outcome.deleted} audit row(s) older than ${new Date(cutoff).toISOString()} in ${Date.now() - now} ms` +
            (outcome.more && !this.stopping ? ' (rows or free space left: the next run starts at once)' : ''),
        );
      }
    } catch (error) {
      this.logger.error(`audit prune failed: ${(error as Error).message}`);
    }
    await this.report();
    // Started from the interval's callback chain, not awaited: this run's promise settles first.
    if (outcome.more && !this.stopping) setImmediate(() => void this.tick());
    return outcome;
  }

  private async prune(cutoff: number, retentionMs: number, now: number, lease: JobLease): Promise<PruneRun> {
    const pace = new RunPace(lease, this.config.pruneDutyPercent, this.stopped.signal, this.logger);
    try {
      // Three intervals ahead: a run or two may be skipped (lock held elsewhere, store busy) before the next.
      await this.repository.prepareRetention(retentionMs, now, 3 * this.config.pruneIntervalSecs * 1000);
    } catch (error) {
      // Expiry by the store itself is an optimisation: the batches below still keep the retention.
      this.logger.warn(`audit retention: the store's own expiry is not ready (${(error as Error).message}); pruning row by row`);
    }
    let deleted = 0;
    try {
      deleted = await this.repository.dropExpired(cutoff);
      this.pruned.inc(deleted);
    } catch (error) {
      this.logger.warn(`audit retention: expired partitions not dropped this run (${(error as Error).message}); pruning row by row`);
    }
    const cap = this.config.pruneBatch * this.config.pruneMaxBatches;
    let rowByRow = 0;
    let more = true;
    // The backlog first, paced; then the inflow (deletes go oldest first, so only in this order).
    for (const [below, paced] of [[Math.min(this.backlogBefore, cutoff), true], [cutoff, false]] as const) {
      more = true;
      while (rowByRow < cap && !this.stopping) {
        const wanted = Math.min(this.sizer.size, cap - rowByRow);
        const batchStart = performance.now();
        const n = await this.repository.deleteOlderThan(below, wanted);
        const busyMs = performance.now() - batchStart;
        this.sizer.observe(n, busyMs);
        rowByRow += n;
        this.pruned.inc(n);
        if (n < wanted) {
          more = false;
          break;
        }
        if (!(await pace.rest(paced ? busyMs : 0))) break;
      }
      if (more) break;
    }
    deleted += rowByRow;
    if (deleted > 0) this.reclaimPending = true;
    // The space goes back once the rows are gone (free pages are reused by new rows meanwhile anyway).
    if (!more) {
      while (this.reclaimPending && !this.stopping) {
        const stepStart = performance.now();
        this.reclaimPending = await this.repository.reclaimStep();
        if (this.reclaimPending && !(await pace.rest(performance.now() - stepStart))) break;
      }
      more = this.reclaimPending && !this.stopping;
    }
    return { deleted, more };
  }

  /** Publishes the lag and the row count; logs an ERROR while the job is behind. */
  private async report(): Promise<void> {
    try {
      const [oldest, rows] = await Promise.all([this.repository.oldestTs(), this.repository.approximateCount()]);
      const now = Date.now();
      const lagSecs = oldest === null ? 0 : Math.max(0, (now - oldest) / 1000 - this.config.retentionSecs);
      this.lag.set(lagSecs);
      this.rows.set(rows);
      const threshold = Math.max(this.config.pruneLagAlertSecs, 2 * this.config.pruneIntervalSecs);
      if (lagSecs > threshold && now - this.lastLagAlert >= LAG_ALERT_EVERY_MS) {
        this.lastLagAlert = now;
        this.logger.error(
          `audit retention is behind: the oldest row is ${Math.round(lagSecs)} s past the retention ` +
            `(threshold ${threshold} s, about ${rows} row(s) stored); see "Sizing" in docs/audit.md`,
        );
      } else if (lagSecs <= threshold && this.lastLagAlert !== 0) {
        this.lastLagAlert = 0;
        this.logger.log(`audit retention caught up: the oldest row is ${Math.round(lagSecs)} s past the retention`);
      }
    } catch (error) {
      this.logger.warn(`audit retention lag not measured: ${(error as Error).message}`);
    }
  }
}

/**
 * The pace of one run: after a batch or vacuum step that kept the store busy `busyMs`, it waits
 * `busyMs × (100 − duty) / duty`, so the run occupies the store at most `duty` percent of the time
 * (measured from here: a batch's time includes any wait for the store, so a busier store gets a
 * slower prune). It renews the lock's lease as it goes and ends the run when its budget is spent, the
 * lease is lost, or the job stops.
 */
class RunPace {
  private readonly started = Date.now();
  private renewed = Date.now();

  constructor(
    private readonly lease: JobLease,
    private readonly dutyPercent: number,
    private readonly stopped: AbortSignal,
    private readonly logger: Logger,
  ) {}

  /** Waits out the pause after `busyMs` of work (0: none, for the inflow); false when the run must end instead. */
  async rest(busyMs: number): Promise<boolean> {
    if (Date.now() - this.started >= RUN_BUDGET_MS || this.stopped.aborted) return false;
    const pauseMs = (busyMs * (100 - this.dutyPercent)) / this.dutyPercent;
    // A timer even at 100 %: the request path gets a turn of the event loop between two batches.
    await pause(pauseMs, this.stopped);
    if (this.stopped.aborted) return false;
    if (Date.now() - this.renewed < RENEW_AFTER_MS) return true;
    let renewed: boolean;
    try {
      renewed = await this.lease.renew();
    } catch (error) {
      this.logger.warn(`audit prune: the lock's lease could not be renewed (${(error as Error).message}); this run ends here`);
      return false;
    }
    if (!renewed) {
      this.logger.warn(`audit prune: the lock's lease lapsed before it was renewed (a batch and its pause took over ${(LOCK_TTL_MS - RENEW_AFTER_MS) / 1000} s); this run ends here`);
      return false;
    }
    this.renewed = Date.now();
    return true;
  }
}

/** Resolves after `ms`, or at once when `stop` is aborted. */
function pause(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stop.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stop.addEventListener('abort', done, { once: true });
  });
}
