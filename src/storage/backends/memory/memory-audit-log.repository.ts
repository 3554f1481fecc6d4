import { AuditLogRepository } from '../../ports/audit-log.repository';
import {
  AuditQuery,
  AuditRecord,
  compareAuditOrder,
  isAuditPosition,
  kindMatches,
} from '../../../audit/domain/audit-record';
import { Page, encodeCursor } from '../../../common/page';
import { readCursor } from '../../../common/errors/storage-errors';

function matches(r: Pick<AuditRecord, 'ts' | 'kind' | 'keyId' | 'tenantId'>, q: AuditQuery): boolean {
  return (
    (q.since === undefined || r.ts >= q.since) &&
    (q.until === undefined || r.ts < q.until) &&
    (q.kind === undefined || kindMatches(r.kind, q.kind)) &&
    (q.keyId === undefined || r.keyId === q.keyId) &&
    (q.tenantId === undefined || r.tenantId === q.tenantId)
  );
}

/** A stored row: the record's columns, its payload as JSON text (as the SQL stores keep it). */
type Row = Omit<AuditRecord, 'payload'> & { payload: string };

/** A copy of a stored row for the caller. */
function toRecord(row: Row): AuditRecord {
  return { ...row, payload: JSON.parse(row.payload) as Record<string, unknown> };
}

/**
 * Audit rows in an array kept in (ts, id) order; fine for a process-local, pruned log. Payloads are
 * kept as JSON text, not objects: one native stringify per event instead of a structured clone, and a
 * long log is a few flat strings per row to the garbage collector instead of a tree of objects.
 */
export class MemoryAuditLogRepository extends AuditLogRepository {
  private rows: Row[] = [];
  private readonly ids = new Set<string>();

  async append(records: AuditRecord[]): Promise<void> {
    let sorted = true;
    for (const { id, ts, kind, requestId, keyId, tenantId, payload } of records) {
      if (this.ids.has(id)) continue;
      const row: Row = { id, ts, kind, requestId, keyId, tenantId, payload: JSON.stringify(payload) };
      this.ids.add(id);
      const last = this.rows[this.rows.length - 1];
      if (last && compareAuditOrder(last, row) > 0) sorted = false;
      this.rows.push(row);
    }
    if (!sorted) this.rows.sort(compareAuditOrder);
  }

  async query(query: AuditQuery, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
    const before = readCursor(cursor, isAuditPosition);
    const items: AuditRecord[] = [];
    let more = false;
    for (let i = this.rows.length - 1; i >= 0; i--) {
      const row = this.rows[i];
      if (before && compareAuditOrder(row, before) >= 0) continue;
      if (!matches(row, query)) continue;
      if (items.length === limit) {
        more = true;
        break;
      }
      items.push(toRecord(row));
    }
    const last = items[items.length - 1];
    return { items, nextCursor: more ? encodeCursor({ ts: last.ts, id: last.id }) : null };
  }

  async *scan(query: AuditQuery, batchSize: number): AsyncIterable<AuditRecord[]> {
    let batch: AuditRecord[] = [];
    for (const row of this.rows.filter((r) => matches(r, query))) {
      batch.push(toRecord(row));
      if (batch.length === batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  async deleteOlderThan(cutoff: number, maxRows: number): Promise<number> {
    let n = 0;
    while (n < this.rows.length && n < maxRows && this.rows[n].ts < cutoff) n++;
    for (const row of this.rows.slice(0, n)) this.ids.delete(row.id);
    this.rows = this.rows.slice(n);
    return n;
  }

  async count(): Promise<number> {
    return this.rows.length;
  }

  async oldestTs(): Promise<number | null> {
    return this.rows[0]?.ts ?? null;
  }
}
