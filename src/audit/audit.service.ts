import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { Counter } from 'prom-client';
import { AppConfig } from '../config/app-config';
import { MetricsService } from '../metrics/metrics.service';
import { AuditLogRepository } from './audit-log.repository';
import { newAuditId } from './domain/audit-id';
import { AuditRecord } from './domain/audit-record';

export interface AuditEvent {
  kind: string;
  requestId?: string | null;
  keyId?: string | null;
  tenantId?: string | null;
  payload: Record<string, unknown>;
}

type DropReason = 'queue_full' | 'shutdown';

/** Attempts of the final flush on shutdown before the remaining events are given up (and counted). */
const SHUTDOWN_ATTEMPTS = 3;
const SHUTDOWN_RETRY_MS = 500;

/**
 * The audit trail's entry point for other features; callers pass payloads already free of secrets.
 * `record` queues (request path: no storage round trip) and a timer writes batches; `recordNow`
 * writes at once (admin mutations: rare, and their caller should know they are stored). The queue is
 * bounded: past AUDIT_QUEUE_MAX new events are dropped. Nothing is lost silently: every drop is counted
 * (`ditto_audit_dropped_total{reason}`) and logged. Shutdown flushes everything queued.
 */
@Injectable()
export class AuditService implements OnApplicationShutdown {
  private readonly logger = new Logger(AuditService.name);
  private queue: AuditRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  /** A flush chained behind the running one and not started yet: later calls join it. */
  private nextFlush: Promise<void> | null = null;
  private droppedSinceLog = 0;
  /** After a failed write, batches wait for the retry timer instead of hitting a failing store per event. */
  private retryAt = 0;
  private readonly droppedTotal: Counter<'reason'>;
  private readonly writtenTotal: Counter;
  private readonly writeErrors: Counter;
  /** Events dropped since start (queue full, or unwritable at shutdown). */
  dropped = 0;

  constructor(
    private readonly repository: AuditLogRepository,
    private readonly config: AppConfig,
    metrics: MetricsService,
  ) {
    this.droppedTotal = metrics.counter('ditto_audit_dropped_total', 'Audit events dropped: queue full, or not writable before shutdown', ['reason']);
    this.writtenTotal = metrics.counter('ditto_audit_written_total', 'Audit events written to storage');
    this.writeErrors = metrics.counter('ditto_audit_write_errors_total', 'Failed audit batch writes (the batch is kept and retried)');
    for (const reason of ['queue_full', 'shutdown'] as const) this.droppedTotal.inc({ reason }, 0);
    metrics.gauge('ditto_audit_queue_depth', 'Audit events waiting to be written', [], (gauge) => gauge.set(this.queue.length));
  }

  record(event: AuditEvent): void {
    if (this.queue.length >= this.config.audit.queueMax) {
      this.drop('queue_full', 1);
      return;
    }
    this.queue.push(toRecord(event));
    if (this.queue.length >= this.config.audit.batchSize && Date.now() >= this.retryAt) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.config.audit.flushMs);
  }

  async recordNow(event: AuditEvent): Promise<void> {
    await this.repository.append([toRecord(event)]);
    this.writtenTotal.inc();
  }

  /** Events waiting to be written. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Writes everything queued so far; resolves when it is stored, or when a write failed (the events
   * stay queued and a retry is scheduled). Batches are written one at a time.
   */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.nextFlush) return this.nextFlush;
    const next = this.flushing.then(() => {
      this.nextFlush = null;
      return this.drain();
    });
    this.nextFlush = next;
    this.flushing = next;
    return next;
  }

  async onApplicationShutdown(): Promise<void> {
    // The HTTP server has closed by now (Nest disposes it before this hook), so nothing new arrives.
    for (let attempt = 1; ; attempt++) {
      await this.flush();
      if (this.queue.length === 0 || attempt >= SHUTDOWN_ATTEMPTS) break;
      await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_RETRY_MS));
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.queue.length > 0) {
      const lost = this.queue.length;
      this.queue = [];
      this.droppedTotal.inc({ reason: 'shutdown' }, lost);
      this.dropped += lost;
      this.logger.error(`shutting down with ${lost} audit event(s) that could not be written: they are lost`);
    }
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.config.audit.batchSize);
      try {
        await this.repository.append(batch);
        this.writtenTotal.inc(batch.length);
        this.retryAt = 0;
      } catch (error) {
        this.writeErrors.inc();
        // Keep the rows for the next attempt, ahead of newer ones; what no longer fits is counted as dropped.
        const room = Math.max(0, this.config.audit.queueMax - this.queue.length);
        if (batch.length > room) this.drop('queue_full', batch.length - room);
        this.queue.unshift(...batch.slice(0, room));
        this.logger.error(`audit write of ${batch.length} event(s) failed, will retry: ${(error as Error).message}`);
        const delay = Math.max(this.config.audit.flushMs, 1000);
        this.retryAt = Date.now() + delay;
        this.timer ??= setTimeout(() => void this.flush(), delay);
        return;
      }
    }
    if (this.droppedSinceLog > 0) {
      this.logger.warn(`audit queue drained; ${this.droppedSinceLog} event(s) were dropped while it was full`);
      this.droppedSinceLog = 0;
    }
  }

  private drop(reason: DropReason, count: number): void {
    this.dropped += count;
    this.droppedTotal.inc({ reason }, count);
    if (this.droppedSinceLog === 0) this.logger.warn(`audit queue full (${this.config.audit.queueMax}): dropping events until it drains`);
    this.droppedSinceLog += count;
  }
}

function toRecord(event: AuditEvent): AuditRecord {
  const ts = Date.now();
  return {
    id: newAuditId(ts),
    ts,
    kind: event.kind,
    requestId: event.requestId ?? null,
    keyId: event.keyId ?? null,
    tenantId: event.tenantId ?? null,
    payload: event.payload,
  };
}
