import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { Counter } from 'prom-client';
import type { ConfigType } from '@nestjs/config';
import { auditConfig } from './audit.config';
import { MetricsService } from '../metrics/metrics.service';
import { AuditLogRepository, AuditRecordRejected } from '../storage/ports/audit-log.repository';
import { newAuditId } from './domain/audit-id';
import { boundPayload, storableName } from './domain/audit-payload';
import { AuditRecord } from './domain/audit-record';

export interface AuditEvent {
  kind: string;
  requestId?: string | null;
  keyId?: string | null;
  tenantId?: string | null;
  payload: Record<string, unknown>;
}

type DropReason = 'queue_full' | 'queue_bytes' | 'rejected' | 'shutdown';
const DROP_REASONS: readonly DropReason[] = ['queue_full', 'queue_bytes', 'rejected', 'shutdown'];

/** A queued event with its size estimate (what AUDIT_QUEUE_MAX_BYTES counts). */
interface Queued {
  record: AuditRecord;
  bytes: number;
  /** Writes of this event alone that failed right after a successful write (see `attempt`). */
  strikes: number;
  /** Whether it has waited among the suspects already (logged once). */
  suspected: boolean;
}

/** One drain's attempt at a batch: what the bisection learnt so far. */
interface Attempt {
  /** Failed calls since the last successful one (or the start); past `budget` the store is taken as down. */
  failures: number;
  budget: number;
  down: boolean;
  /** Entries not written because the store was taken as down; they stay queued. */
  unwritten: Queued[];
  lastError: unknown;
}

/** Attempts of the final flush on shutdown before the remaining events are given up (and counted). */
const SHUTDOWN_ATTEMPTS = 3;
const SHUTDOWN_RETRY_MS = 500;
/** Estimated bytes written in one call at most (one event at least): a store request, and the copy a
 * driver makes of it while it is sent, stay a few MiB whatever AUDIT_BATCH_SIZE says. */
const BATCH_MAX_BYTES = 8 * 1024 * 1024;
/** Size estimate of a record apart from its payload and strings (the objects, the id, ts). */
const RECORD_BYTES = 160;
/** A single-event write that failed this many times, each right after a successful write, is dropped. */
const STRIKES_TO_DROP = 2;
/** The longest wait between two tries of waiting suspects when nothing else is written. */
const SUSPECT_RETRY_MAX_MS = 60_000;

/**
 * The audit trail's entry point for other features; callers pass payloads already free of secrets.
 * `record` queues (request path: no storage round trip) and a timer writes batches; `recordNow`
 * writes at once (admin mutations: rare, and their caller should know they are stored).
 *
 * Every payload is copied when recorded into bounded plain JSON (boundPayload), so an event can always
 * be serialised. The queue is bounded by events (AUDIT_QUEUE_MAX) and by estimated bytes
 * (AUDIT_QUEUE_MAX_BYTES); past either, new events are dropped. A batch the store fails on is split
 * in halves down to single events, so that one event the store refuses cannot hold back the others
 * (docs/audit.md, "Failed writes"). Nothing is lost silently: every drop is counted
 * (`ditto_audit_dropped_total{reason}`) and logged. Shutdown flushes everything queued.
 */
@Injectable()
export class AuditService implements OnApplicationShutdown {
  private readonly logger = new Logger(AuditService.name);
  /** Events waiting, oldest first; the batch being written stays in it until written. */
  private queue: Queued[] = [];
  /** Events whose write alone failed with an error that does not say "refused": each gets another
   * try alone right after a later successful write. Counted in the queue's bounds. */
  private suspects: Queued[] = [];
  /** Events recorded and not yet written or dropped: in the queue or among the suspects, each once
   * (a batch's events stay in the queue while it is written, and some may turn suspects meanwhile). */
  private waiting = 0;
  private queueBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The retry of waiting suspects when no other write comes to try them after (a quiet outage). */
  private suspectTimer: NodeJS.Timeout | null = null;
  private suspectRetryMs = 0;
  private flushing: Promise<void> = Promise.resolve();
  /** A flush chained behind the running one and not started yet: later calls join it. */
  private nextFlush: Promise<void> | null = null;
  private droppedSinceLog = 0;
  /** After a failed write, batches wait for the retry timer instead of hitting a failing store per event. */
  private retryAt = 0;
  /** The last attempt found the store down: the next one tries the batch whole before splitting it. */
  private storeDown = false;
  /** Whether the most recent append call succeeded: a single-event failure right after one is a strike. */
  private lastCallOk = false;
  private shuttingDown = false;
  private readonly droppedTotal: Counter<'reason'>;
  private readonly writtenTotal: Counter;
  private readonly writeErrors: Counter;
  /** Events dropped since start (queue full, refused by the store, or unwritable at shutdown). */
  dropped = 0;

  constructor(
    private readonly repository: AuditLogRepository,
    @Inject(auditConfig.KEY) private readonly config: ConfigType<typeof auditConfig>,
    metrics: MetricsService,
  ) {
    this.droppedTotal = metrics.counter(
      'ditto_audit_dropped_total',
      'Audit events dropped: queue full (events or bytes), refused by the store, or not writable before shutdown',
      ['reason'],
    );
    this.writtenTotal = metrics.counter('ditto_audit_written_total', 'Audit events written to storage');
    this.writeErrors = metrics.counter('ditto_audit_write_errors_total', 'Failed audit write calls (the events are kept and retried, or split to find one the store refuses)');
    for (const reason of DROP_REASONS) this.droppedTotal.inc({ reason }, 0);
    metrics.gauge('ditto_audit_queue_depth', 'Audit events waiting to be written', [], (gauge) => gauge.set(this.queued));
    metrics.gauge('ditto_audit_queue_bytes', 'Estimated bytes of the audit events waiting to be written', [], (gauge) => gauge.set(this.queueBytes));
  }

  record(event: AuditEvent): void {
    const { queueMax, queueMaxBytes, batchSize } = this.config;
    // Before the copy: a full queue does not pay for copying what it drops.
    if (this.queued >= queueMax) return this.drop('queue_full', 1);
    const queued = this.toQueued(event);
    if (this.queueBytes + queued.bytes > queueMaxBytes) return this.drop('queue_bytes', 1);
    this.queue.push(queued);
    this.waiting++;
    this.queueBytes += queued.bytes;
    const full = this.queue.length >= batchSize || this.queueBytes >= BATCH_MAX_BYTES;
    if (full && Date.now() >= this.retryAt) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.config.flushMs);
  }

  async recordNow(event: AuditEvent): Promise<void> {
    await this.repository.append([this.toQueued(event).record]);
    this.writtenTotal.inc();
  }

  /** Events waiting to be written. */
  get queued(): number {
    return this.waiting;
  }

  /** Estimated bytes of the events waiting to be written (bounded by AUDIT_QUEUE_MAX_BYTES). */
  get queuedBytes(): number {
    return this.queueBytes;
  }

  /**
   * Writes everything queued so far; resolves when it is stored, or when the store failed (the events
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
    this.shuttingDown = true;
    for (let attempt = 1; ; attempt++) {
      await this.flush();
      if (this.queued === 0 || attempt >= SHUTDOWN_ATTEMPTS) break;
      await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_RETRY_MS));
    }
    if (this.timer) clearTimeout(this.timer);
    if (this.suspectTimer) clearTimeout(this.suspectTimer);
    this.timer = null;
    this.suspectTimer = null;
    if (this.queued > 0) {
      const lost = this.queued;
      this.queue = [];
      this.suspects = [];
      this.waiting = 0;
      this.queueBytes = 0;
      this.droppedTotal.inc({ reason: 'shutdown' }, lost);
      this.dropped += lost;
      this.logger.error(`shutting down with ${lost} audit event(s) that could not be written: they are lost`);
    }
  }

  private async drain(): Promise<void> {
    if (this.shuttingDown && this.suspects.length > 0) {
      // Last chance for events waiting for a retry alone: back into the batches (here, where no other
      // drain runs, since the batch being written is the head of the queue).
      this.queue.unshift(...this.suspects);
      this.suspects = [];
    }
    // The queue is empty and suspects wait: no write of other events is coming to try them after, so
    // they are tried now (the store may be back after a quiet outage).
    if (this.queue.length === 0 && this.suspects.length > 0 && !this.shuttingDown) await this.retrySuspect(this.lastCallOk);
    while (this.queue.length > 0) {
      const batch = this.headBatch();
      const attempt: Attempt = { failures: 0, budget: Math.ceil(Math.log2(batch.length)) + 2, down: false, unwritten: [], lastError: null };
      await this.attempt(batch, attempt, !this.storeDown);
      // The batch was the head of the queue (record() only appends); what is left of it is `unwritten`.
      this.queue.splice(0, batch.length);
      if (attempt.down) {
        // Behind the tail, so that the events after it get their turn: a batch the store refuses with an
        // error that does not say so must not hold everything back. Rows are read in (ts, id) order,
        // whatever order they were written in.
        this.queue.push(...attempt.unwritten);
        this.storeDown = true;
        const delay = Math.max(this.config.flushMs, 1000);
        this.retryAt = Date.now() + delay;
        this.timer ??= setTimeout(() => void this.flush(), delay);
        const error = attempt.lastError as Error;
        this.logger.error(`audit write of ${attempt.unwritten.length} event(s) failed, will retry: ${error?.message ?? String(error)}`);
        return;
      }
      this.storeDown = false;
      this.retryAt = 0;
    }
    if (this.droppedSinceLog > 0) {
      this.logger.warn(`audit queue drained; ${this.droppedSinceLog} event(s) were dropped while it was full`);
      this.droppedSinceLog = 0;
    }
    this.scheduleSuspectRetry();
  }

  /**
   * While suspects wait, a timer tries them again (after AUDIT_FLUSH_MS, at least 1 s, doubling up to
   * 60 s while they keep failing), so a quiet outage's events are written once the store is back even if
   * nothing else is recorded. A failure on this timer is not a strike: nothing else was written before it.
   */
  private scheduleSuspectRetry(): void {
    if (this.suspects.length === 0 || this.shuttingDown) {
      this.suspectRetryMs = 0;
      return;
    }
    if (this.suspectTimer !== null) return;
    this.suspectRetryMs = Math.min(SUSPECT_RETRY_MAX_MS, this.suspectRetryMs === 0 ? Math.max(this.config.flushMs, 1000) : this.suspectRetryMs * 2);
    this.suspectTimer = setTimeout(() => {
      this.suspectTimer = null;
      void this.flush();
    }, this.suspectRetryMs);
    this.suspectTimer.unref();
  }

  /** The oldest events, at most AUDIT_BATCH_SIZE and BATCH_MAX_BYTES (one at least); left in the queue. */
  private headBatch(): Queued[] {
    let bytes = 0;
    let end = 0;
    const max = Math.min(this.queue.length, this.config.batchSize);
    while (end < max && (end === 0 || bytes + this.queue[end].bytes <= BATCH_MAX_BYTES)) bytes += this.queue[end++].bytes;
    return this.queue.slice(0, end);
  }

  /**
   * Writes `entries`, or finds out which of them the store refuses (docs/audit.md, "Failed writes"):
   * - a failed write of several events is split in halves, each tried in turn, down to single events;
   * - an event whose write alone fails with AuditRecordRejected (the store said it refuses it) is dropped;
   * - one whose write alone fails otherwise is dropped once it has failed alone STRIKES_TO_DROP times,
   *   each right after a successful write of other events (so a store going down between two writes
   *   costs no event); until then it waits in `suspects`;
   * - after more than `budget` failed calls in a row (about log2 of the batch: one event's path down
   *   the halves), or at once when the previous attempt found the store down, the store is taken as
   *   down: the rest stays queued for the retry.
   */
  private async attempt(entries: Queued[], attempt: Attempt, split: boolean): Promise<void> {
    if (attempt.down) {
      attempt.unwritten.push(...entries);
      return;
    }
    const afterSuccess = this.lastCallOk;
    try {
      await this.repository.append(entries.map((e) => e.record));
      this.lastCallOk = true;
      attempt.failures = 0;
      this.done(entries);
      this.writtenTotal.inc(entries.length);
      await this.retrySuspect();
      return;
    } catch (error) {
      this.lastCallOk = false;
      this.writeErrors.inc();
      attempt.lastError = error;
      if (error instanceof AuditRecordRejected) {
        // The store answered: it is up, and this batch holds something it will never take.
        attempt.failures = 0;
        if (entries.length === 1) return this.reject(entries[0], error.message);
      } else {
        attempt.failures++;
        if (!split || attempt.failures > attempt.budget) {
          attempt.down = true;
          attempt.unwritten.push(...entries);
          return;
        }
        if (entries.length === 1) return this.suspect(entries[0], afterSuccess, error);
      }
    }
    const half = Math.ceil(entries.length / 2);
    await this.attempt(entries.slice(0, half), attempt, true);
    await this.attempt(entries.slice(half), attempt, true);
  }

  /** Waiting suspects get their next try alone, until one fails: right after a successful write
   * (`afterSuccess`: a failure then is a strike), or on the suspects' own timer. */
  private async retrySuspect(afterSuccess = true): Promise<void> {
    for (let entry = this.suspects.shift(); entry !== undefined; entry = this.suspects.shift()) {
      try {
        await this.repository.append([entry.record]);
        this.lastCallOk = true;
        afterSuccess = true;
        this.done([entry]);
        this.writtenTotal.inc();
      } catch (error) {
        this.lastCallOk = false;
        this.writeErrors.inc();
        if (error instanceof AuditRecordRejected) this.reject(entry, error.message);
        else this.suspect(entry, afterSuccess, error);
        return;
      }
    }
  }

  private suspect(entry: Queued, afterSuccess: boolean, error: unknown): void {
    if (afterSuccess) entry.strikes++;
    if (entry.strikes >= STRIKES_TO_DROP) return this.reject(entry, `its write failed ${entry.strikes} times while others succeeded (${errorClass(error)})`);
    if (!entry.suspected) {
      const { id, kind, requestId } = entry.record;
      this.logger.warn(`audit event ${id} (${kind}${requestId ? `, request ${requestId}` : ''}) could not be written alone (${errorClass(error)}); it is tried again after the next successful write, or on its own within a few seconds`);
    }
    entry.suspected = true;
    this.suspects.push(entry);
  }

  /** Drops an event the store refuses: counted, and logged by id, kind and request (never the payload). */
  private reject(entry: Queued, reason: string): void {
    this.done([entry]);
    this.dropped++;
    this.droppedTotal.inc({ reason: 'rejected' });
    const { id, kind, requestId } = entry.record;
    this.logger.error(`audit event ${id} (${kind}${requestId ? `, request ${requestId}` : ''}) refused by the store, dropped: ${reason}`);
  }

  /** Entries that left the queue for good (written or dropped). */
  private done(entries: Queued[]): void {
    this.waiting -= entries.length;
    for (const entry of entries) this.queueBytes -= entry.bytes;
  }

  private drop(reason: 'queue_full' | 'queue_bytes', count: number): void {
    this.dropped += count;
    this.droppedTotal.inc({ reason }, count);
    if (this.droppedSinceLog === 0) {
      const bound = reason === 'queue_full' ? `${this.config.queueMax} events` : `${this.config.queueMaxBytes} bytes`;
      this.logger.warn(`audit queue full (${bound}): dropping events until it drains`);
    }
    this.droppedSinceLog += count;
  }

  private toQueued(event: AuditEvent): Queued {
    const ts = Date.now();
    const { payload, bytes } = boundPayload(event.payload, this.config.eventMaxBytes);
    const record: AuditRecord = {
      id: newAuditId(ts),
      ts,
      kind: storableName(event.kind),
      requestId: event.requestId == null ? null : storableName(event.requestId),
      keyId: event.keyId == null ? null : storableName(event.keyId),
      tenantId: event.tenantId == null ? null : storableName(event.tenantId),
      payload,
    };
    const strings = record.kind.length + (record.requestId?.length ?? 0) + (record.keyId?.length ?? 0) + (record.tenantId?.length ?? 0);
    return { record, bytes: RECORD_BYTES + strings + bytes, strikes: 0, suspected: false };
  }
}

/** An error's class and code, never its message (a driver's message may quote the refused value). */
function errorClass(error: unknown): string {
  const e = error as { name?: unknown; code?: unknown };
  const name = typeof e?.name === 'string' ? e.name : 'error';
  return typeof e?.code === 'string' || typeof e?.code === 'number' ? `${name} ${e.code}` : name;
}
