import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
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

/**
 * The audit trail's entry point for other features; callers pass payloads already free of secrets.
 * `record` queues (request path: no storage round trip) and a timer writes batches; `recordNow`
 * writes at once (admin mutations: rare, and their caller should know they are stored). The queue is
 * bounded: past AUDIT_QUEUE_MAX new events are dropped and counted, and the drop is logged. Shutdown
 * flushes everything queued.
 */
@Injectable()
export class AuditService implements OnApplicationShutdown {
  private readonly logger = new Logger(AuditService.name);
  private queue: AuditRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private droppedSinceLog = 0;
  /** Events dropped because the queue was full, since start. */
  dropped = 0;

  constructor(
    private readonly repository: AuditLogRepository,
    private readonly config: AppConfig,
  ) {}

  record(event: AuditEvent): void {
    if (this.queue.length >= this.config.audit.queueMax) {
      this.dropped++;
      if (this.droppedSinceLog++ === 0) this.logger.warn(`audit queue full (${this.config.audit.queueMax}): dropping events until it drains`);
      return;
    }
    this.queue.push(toRecord(event));
    if (this.queue.length >= this.config.audit.batchSize) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.config.audit.flushMs);
  }

  async recordNow(event: AuditEvent): Promise<void> {
    await this.repository.append([toRecord(event)]);
  }

  /** Writes everything queued so far; resolves when it is stored. Batches are written one at a time. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flushing = this.flushing.then(async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.config.audit.batchSize);
        try {
          await this.repository.append(batch);
        } catch (error) {
          // Keep the rows for the next attempt (bounded by queueMax) rather than losing them.
          this.queue.unshift(...batch.slice(0, Math.max(0, this.config.audit.queueMax - this.queue.length)));
          this.logger.error(`audit write of ${batch.length} event(s) failed, will retry: ${(error as Error).message}`);
          this.timer ??= setTimeout(() => void this.flush(), Math.max(this.config.audit.flushMs, 1000));
          return;
        }
      }
      if (this.droppedSinceLog > 0) {
        this.logger.warn(`audit queue drained; ${this.droppedSinceLog} event(s) were dropped while it was full`);
        this.droppedSinceLog = 0;
      }
    });
    return this.flushing;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.flush();
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
