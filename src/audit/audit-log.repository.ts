import { Page } from '../common/page';
import { AuditQuery, AuditRecord } from './domain/audit-record';

/** Storage port for the audit trail. */
export abstract class AuditLogRepository {
  /** Appends a batch in one round trip / transaction where the store allows. A record whose id is
   * already stored is skipped (so re-running a migration changes nothing). */
  abstract append(records: AuditRecord[]): Promise<void>;
  /** Newest first (ts desc, then id desc); cursor paging returns every matching row exactly once. */
  abstract query(query: AuditQuery, limit: number, cursor: string | null): Promise<Page<AuditRecord>>;
  /** Oldest first (ts asc, then id asc), in batches of at most `batchSize`: for export and migration.
   * Uses keyset paging, so memory stays bounded whatever the number of rows. */
  abstract scan(query: AuditQuery, batchSize: number): AsyncIterable<AuditRecord[]>;
  /** Deletes at most `maxRows` rows with ts < `cutoff`; returns how many were deleted. */
  abstract deleteOlderThan(cutoff: number, maxRows: number): Promise<number>;
  abstract count(): Promise<number>;
}
