import { Page } from '../../common/page';
import { AuditQuery, AuditRecord } from '../../audit/domain/audit-record';

/**
 * Thrown by `append` when the store answered and refused records for what they hold (a constraint, a
 * value it cannot store), as opposed to not answering (down, timeout, no space). Writing the same
 * records again would fail again. The message names the store's error class or code, never a value.
 * Records of the batch that were acceptable may have been written (appends skip stored ids anyway).
 */
export class AuditRecordRejected extends Error {
  constructor(reason: string) {
    super(`the store refused the audit record(s): ${reason}`);
    this.name = 'AuditRecordRejected';
  }
}

/** Storage port for the audit trail. */
export abstract class AuditLogRepository {
  /** Appends a batch in one round trip / transaction where the store allows. A record whose id is
   * already stored is skipped (so re-running a migration changes nothing). Throws AuditRecordRejected
   * when the store refuses a record for its content. */
  abstract append(records: AuditRecord[]): Promise<void>;
  /** Newest first (ts desc, then id desc); cursor paging returns every matching row exactly once. */
  abstract query(query: AuditQuery, limit: number, cursor: string | null): Promise<Page<AuditRecord>>;
  /** Oldest first (ts asc, then id asc), in batches of at most `batchSize`: for export and migration.
   * Uses keyset paging, so memory stays bounded whatever the number of rows. */
  abstract scan(query: AuditQuery, batchSize: number): AsyncIterable<AuditRecord[]>;
  /** Deletes at most `maxRows` rows with ts < `cutoff`; returns how many were deleted. */
  abstract deleteOlderThan(cutoff: number, maxRows: number): Promise<number>;
  abstract count(): Promise<number>;

  /** The oldest row's ts, or null when there is none (read from the (ts, id) index: cheap at any size). */
  abstract oldestTs(): Promise<number | null>;

  /** The number of rows, approximately where counting exactly would scan (PostgreSQL: the planner's
   * statistics); for the `ditto_audit_rows` gauge. */
  approximateCount(): Promise<number> {
    return this.count();
  }

  /**
   * Readies the store's own expiry before a prune run, for rows kept `retentionMs` (the retention job
   * calls it under its lock at every run, and runs again within `aheadMs`): PostgreSQL creates the time
   * partitions up to at least `now + aheadMs`, MongoDB keeps its TTL index at the retention. Nothing
   * to do elsewhere.
   */
  async prepareRetention(_retentionMs: number, _now: number, _aheadMs: number): Promise<void> {}

  /**
   * Removes in one step whatever holds only rows with ts < `cutoff` (PostgreSQL: whole time
   * partitions, dropped); returns how many rows went. Stores without such units answer 0, and
   * `deleteOlderThan` removes the rest row by row.
   */
  async dropExpired(_cutoff: number): Promise<number> {
    return 0;
  }

  /** After a run that deleted rows: gives one step of the freed space back to the system where the
   * store keeps it (SQLite: an incremental vacuum of a few hundred free pages); resolves true while
   * there is more to give back. The retention job paces the steps like its batches. Other stores keep
   * no such space: false at once. */
  async reclaimStep(): Promise<boolean> {
    return false;
  }
}
