import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Counter, Gauge } from 'prom-client';
import type { ConfigType } from '@nestjs/config';
import { auditConfig } from './audit.config';
import { PruneBatchSizer } from './prune-batch-sizer';
import { MetricsService } from '../metrics/metrics.service';
import { JobLock } from '../storage/ports/job-lock';
import { AuditLogRepository } from '../storage/ports/audit-log.repository';

export const AUDIT_PRUNE_JOB = 'audit-prune';
/** Lease of the prune lock: if a replica dies while pruning, another may prune after this long. */
const LOCK_TTL_MS = 60_000;
/** A run stops starting new batches after this long, inside the lease with room for the last batch,
 * SQLite's vacuum steps (5 s at most) and partition DDL; the next run starts at once. */
const RUN_BUDGET_MS = 40_000;
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
 * left or the run's time budget is spent, yielding between batches. A batch's size follows the time
 * batches take (PruneBatchSizer). A run cut short is followed by the next one at once, so the job keeps
 * pace with any write rate the store can delete at. After each run the lag (age of the oldest row
 * beyond the retention) and the row count are published, and a lag beyond AUDIT_PRUNE_LAG_ALERT_SECS
 * is logged as an ERROR.
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
  private lastLagAlert = 0;

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
      const result = await this.lock.runExclusive(AUDIT_PRUNE_JOB, LOCK_TTL_MS, () => this.prune(cutoff, retentionMs, now));
      if (result.ran) outcome = result.value;
      if (outcome.deleted > 0) {
        this.logger.log(
          `pruned ${outcome.deleted} audit row(s) older than ${new Date(cutoff).toISOString()} in ${Date.now() - now} ms` +
            (outcome.more && !this.stopping ? ' (run budget spent: the next run starts at once)' : ''),
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

  private async prune(cutoff: number, retentionMs: number, now: number): Promise<PruneRun> {
    const started = Date.now();
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
    while (rowByRow < cap && !this.stopping) {
      const wanted = Math.min(this.sizer.size, cap - rowByRow);
      const batchStart = performance.now();
      const n = await this.repository.deleteOlderThan(cutoff, wanted);
      this.sizer.observe(n, performance.now() - batchStart);
      rowByRow += n;
      this.pruned.inc(n);
      if (n < wanted) {
        more = false;
        break;
      }
      if (Date.now() - started >= RUN_BUDGET_MS) break;
      // Let the request path run between two batches.
      await nextTurn();
    }
    deleted += rowByRow;
    if (deleted > 0) await this.repository.reclaim();
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
