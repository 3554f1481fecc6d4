import { defineConfig } from '../config/config-slice';
import { integer } from '../config/env-schema';

/** The audit writer's batching and bounds, and retention (docs/audit.md). */
export const auditConfig = defineConfig(
  'audit',
  {
    AUDIT_FLUSH_MS: integer(10, 200, 60_000),
    AUDIT_BATCH_SIZE: integer(1, 500, 10_000),
    AUDIT_QUEUE_MAX: integer(100, 50_000, 10_000_000),
    AUDIT_QUEUE_MAX_BYTES: integer(1024 * 1024, 64 * 1024 * 1024, 16 * 1024 * 1024 * 1024),
    // At most 8 MiB: a payload's JSON may be a few times its estimate (escapes), and MongoDB stores 16 MiB per document.
    AUDIT_EVENT_MAX_BYTES: integer(16 * 1024, 1024 * 1024, 8 * 1024 * 1024),
    AUDIT_RETENTION_SECS: integer(0, 2_592_000),
    AUDIT_PRUNE_INTERVAL_SECS: integer(1, 60, 86_400),
    AUDIT_PRUNE_BATCH: integer(1, 5000, 100_000),
    AUDIT_PRUNE_MAX_BATCHES: integer(1, 10_000, 1_000_000),
    AUDIT_PRUNE_DUTY_PERCENT: integer(1, 25, 100),
    AUDIT_PRUNE_LAG_ALERT_SECS: integer(1, 600, 31_536_000),
  },
  (env) => ({
    flushMs: env.AUDIT_FLUSH_MS,
    batchSize: env.AUDIT_BATCH_SIZE,
    queueMax: env.AUDIT_QUEUE_MAX,
    /** The queue's bound in (estimated) bytes of the events it holds. */
    queueMaxBytes: env.AUDIT_QUEUE_MAX_BYTES,
    /** One event's payload is cut down to about this many bytes of JSON. */
    eventMaxBytes: env.AUDIT_EVENT_MAX_BYTES,
    /** Rows older than this are deleted by the prune job; 0 disables the job. */
    retentionSecs: env.AUDIT_RETENTION_SECS,
    pruneIntervalSecs: env.AUDIT_PRUNE_INTERVAL_SECS,
    /** Rows of the first delete statement (later ones adapt to the time a batch takes). */
    pruneBatch: env.AUDIT_PRUNE_BATCH,
    /** Safety cap: a run deletes at most pruneBatch × pruneMaxBatches rows one by one. */
    pruneMaxBatches: env.AUDIT_PRUNE_MAX_BATCHES,
    /** The share of the time a run keeps the store busy: after each batch it waits (100 − this)/this
     * times as long as the batch took (100: no waiting). */
    pruneDutyPercent: env.AUDIT_PRUNE_DUTY_PERCENT,
    /** An ERROR is logged while the oldest row is older than the retention by more than this (and 2 intervals). */
    pruneLagAlertSecs: env.AUDIT_PRUNE_LAG_ALERT_SECS,
  }),
  (env) => (env.AUDIT_EVENT_MAX_BYTES > env.AUDIT_QUEUE_MAX_BYTES ? ['AUDIT_EVENT_MAX_BYTES: must not exceed AUDIT_QUEUE_MAX_BYTES'] : []),
);
