import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { Counter } from 'prom-client';
import type { ConfigType } from '@nestjs/config';
import { auditConfig } from './audit.config';
import { MetricsService } from '../metrics/metrics.service';
import { JobLock } from '../storage/ports/job-lock';
import { AuditLogRepository } from '../storage/ports/audit-log.repository';

export const AUDIT_PRUNE_JOB = 'audit-prune';
/** Lease of the prune lock: if a replica dies while pruning, another may prune after this long. */
const LOCK_TTL_MS = 60_000;
/** A run stops starting new batches after this long, well inside the lease. */
const RUN_BUDGET_MS = LOCK_TTL_MS / 2;

/**
 * Retention (docs/audit.md): every AUDIT_PRUNE_INTERVAL_SECS, deletes rows older than
 * AUDIT_RETENTION_SECS in batches of AUDIT_PRUNE_BATCH, at most AUDIT_PRUNE_MAX_BATCHES per run, under
 * the `audit-prune` JobLock so that one replica prunes at a time. What a run leaves behind waits for
 * the next one. The interval is registered with the SchedulerRegistry at bootstrap because its period
 * comes from the configuration (the @Interval decorator takes a constant).
 */
@Injectable()
export class AuditRetentionJob implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(AuditRetentionJob.name);
  private readonly pruned: Counter;
  private running: Promise<number> | null = null;

  constructor(
    private readonly repository: AuditLogRepository,
    private readonly lock: JobLock,
    private readonly scheduler: SchedulerRegistry,
    @Inject(auditConfig.KEY) private readonly config: ConfigType<typeof auditConfig>,
    metrics: MetricsService,
  ) {
    this.pruned = metrics.counter('ditto_audit_pruned_total', 'Audit rows deleted by the retention job (this instance)');
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
    if (this.scheduler.doesExist('interval', AUDIT_PRUNE_JOB)) this.scheduler.deleteInterval(AUDIT_PRUNE_JOB);
    // Storage closes after this hook: let a run in progress finish its statement first.
    await this.running;
  }

  /** One run (also what the interval calls). Never rejects; a run still in progress is not overlapped. */
  tick(): Promise<number> {
    this.running ??= this.run().finally(() => (this.running = null));
    return this.running;
  }

  private async run(): Promise<number> {
    const cutoff = Date.now() - this.config.retentionSecs * 1000;
    try {
      const result = await this.lock.runExclusive(AUDIT_PRUNE_JOB, LOCK_TTL_MS, () => this.prune(cutoff));
      if (!result.ran) return 0;
      const { deleted, more } = result.value;
      if (deleted > 0) {
        this.logger.log(
          `pruned ${deleted} audit row(s) older than ${new Date(cutoff).toISOString()}` + (more ? ' (run limit reached: any rest goes in the next run)' : ''),
        );
      }
      return deleted;
    } catch (error) {
      this.logger.error(`audit prune failed: ${(error as Error).message}`);
      return 0;
    }
  }

  private async prune(cutoff: number): Promise<{ deleted: number; more: boolean }> {
    const { pruneBatch, pruneMaxBatches } = this.config;
    const started = Date.now();
    let deleted = 0;
    for (let batch = 0; batch < pruneMaxBatches; batch++) {
      const n = await this.repository.deleteOlderThan(cutoff, pruneBatch);
      deleted += n;
      this.pruned.inc(n);
      if (n < pruneBatch) return { deleted, more: false };
      if (Date.now() - started > RUN_BUDGET_MS) break;
    }
    return { deleted, more: true };
  }
}
