import { SelectQueryBuilder } from 'typeorm';
import { AuditLogRepository, AuditRecordRejected } from '../../ports/audit-log.repository';
import { AuditPosition, AuditQuery, AuditRecord, isAuditPosition } from '../../../audit/domain/audit-record';
import { Page, encodeCursor } from '../../../common/page';
import { AuditLogEntity } from './entities/audit-log.entity';
import { AUDIT_COLUMNS, auditValues, toAuditRecord } from './mappers/audit-record.mapper';
import { TypeormStore, prefixUpperBound } from './typeorm-store';
import { PostgresAuditPartitions } from './postgres-audit-partitions';
import { readCursor } from '../../../common/errors/storage-errors';

/** Rows per INSERT statement on PostgreSQL: 500 × 7 parameters stays below its 65535. */
const INSERT_CHUNK = 500;
/** SQLite: rows per delete in the writer thread: what a reserve queued behind one waits (2–3 ms on an
 * idle machine, tens of ms on a busy one). Smaller writes cost more in commits than they save in
 * waiting (250 rows: a third fewer rows/s); how often a request meets one is the job's duty cycle. */
const SQLITE_PRUNE_CHUNK = 1000;
/** SQLite: free pages given back per step of the incremental vacuum (2 MiB of 4 KiB pages, about 10 ms). */
const VACUUM_STEP_PAGES = 500;

export class TypeormAuditLogRepository extends AuditLogRepository {
  private readonly table: string;
  /** PostgreSQL: the table's time partitions (retention drops them whole). */
  private readonly partitions: PostgresAuditPartitions | null;

  constructor(private readonly store: TypeormStore) {
    super();
    this.table = store.table('audit_log');
    this.partitions = store.dialect === 'postgres' ? new PostgresAuditPartitions(store, store.schema ?? 'public') : null;
  }

  async append(records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      await this.insert(records);
    } catch (error) {
      const refusal = refusalCode(error);
      throw refusal === null ? error : new AuditRecordRejected(`${this.store.dialect} ${refusal}`);
    }
  }

  private async insert(records: AuditRecord[]): Promise<void> {
    // SQLite: one prepared insert per row, committed with the turn's ledger writes (SqliteWriter).
    if (this.store.dialect === 'sqlite') {
      await this.store.sqliteWrite({ type: 'audit', rows: records.map(auditValues) });
      return;
    }
    await this.store.transaction(async (s) => {
      for (let start = 0; start < records.length; start += INSERT_CHUNK) {
        const chunk = records.slice(start, start + INSERT_CHUNK);
        const width = AUDIT_COLUMNS.length;
        const rows = chunk.map((_, r) => `(${AUDIT_COLUMNS.map((_, c) => `$${r * width + c + 1}`).join(', ')})`);
        await s.run(
          `INSERT INTO ${this.table} (${AUDIT_COLUMNS.join(', ')}) VALUES ${rows.join(', ')} ON CONFLICT (ts, id) DO NOTHING`,
          chunk.flatMap(auditValues),
        );
      }
    });
  }

  async query(query: AuditQuery, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
    const size = Math.max(1, limit);
    const before = readCursor(cursor, isAuditPosition);
    const rows = await this.store.session((s) => {
      const select = filtered(s.manager.createQueryBuilder(AuditLogEntity, 'a'), query)
        .orderBy('a.ts', 'DESC')
        .addOrderBy('a.id', 'DESC')
        .limit(size + 1);
      if (before !== null) select.andWhere('(a.ts, a.id) < (:ts, :id)', { ts: before.ts, id: before.id });
      return select.getMany();
    });
    const items = rows.slice(0, size).map(toAuditRecord);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > size ? encodeCursor({ ts: last.ts, id: last.id } satisfies AuditPosition) : null };
  }

  async *scan(query: AuditQuery, batchSize: number): AsyncIterable<AuditRecord[]> {
    const size = Math.max(1, batchSize);
    let after: AuditPosition | null = null;
    for (;;) {
      const from = after;
      const rows = await this.store.session((s) => {
        const select = filtered(s.manager.createQueryBuilder(AuditLogEntity, 'a'), query)
          .orderBy('a.ts', 'ASC')
          .addOrderBy('a.id', 'ASC')
          .limit(size);
        if (from !== null) select.andWhere('(a.ts, a.id) > (:ts, :id)', { ts: from.ts, id: from.id });
        return select.getMany();
      });
      if (rows.length > 0) yield rows.map(toAuditRecord);
      if (rows.length < size) return;
      const last = rows[rows.length - 1];
      after = { ts: last.ts, id: last.id };
    }
  }

  async deleteOlderThan(cutoff: number, maxRows: number): Promise<number> {
    const max = Math.floor(maxRows);
    if (max <= 0) return 0;
    if (this.store.dialect === 'sqlite') {
      // In the writer thread, so the event loop never waits on it, and in small writes of their own: a
      // reserve or settle queued meanwhile waits for one of them, not for the whole batch.
      let deleted = 0;
      while (deleted < max) {
        const chunk = Math.min(SQLITE_PRUNE_CHUNK, max - deleted);
        const n = (await this.store.sqliteWrite({ type: 'audit-prune', cutoff, max: chunk })) as number;
        deleted += n;
        if (n < chunk) break;
      }
      return deleted;
    }
    // By (ts, id), the partitioned key: each partition finds its rows by its own index.
    return this.store.session((s) =>
      s.run(
        `DELETE FROM ${this.table} WHERE (ts, id) IN (SELECT ts, id FROM ${this.table} WHERE ts < $1 ORDER BY ts, id LIMIT $2)`,
        [cutoff, max],
      ),
    );
  }

  async count(): Promise<number> {
    return this.store.session((s) => s.manager.count(AuditLogEntity));
  }

  async oldestTs(): Promise<number | null> {
    const rows = await this.store.session((s) => s.rows<{ ts: string | number }>(`SELECT ts FROM ${this.table} ORDER BY ts LIMIT 1`));
    return rows.length === 0 ? null : Number(rows[0].ts);
  }

  /** PostgreSQL: its statistics; SQLite: the span of rowids (new rows take the next rowid and the
   * retention deletes the oldest, so it is exact but for rows deleted out of order). Neither scans. */
  override async approximateCount(): Promise<number> {
    if (this.partitions !== null) return this.partitions.approximateCount();
    const [{ n }] = await this.store.session((s) => s.rows<{ n: number | null }>(`SELECT max(rowid) - min(rowid) + 1 AS n FROM ${this.table}`));
    return n ?? 0;
  }

  override async prepareRetention(retentionMs: number, now: number, aheadMs: number): Promise<void> {
    if (this.partitions === null) return;
    const width = PostgresAuditPartitions.widthFor(retentionMs);
    await this.partitions.createAhead(width, now, now + Math.max(2 * width, aheadMs));
  }

  override async dropExpired(cutoff: number): Promise<number> {
    return this.partitions === null ? 0 : this.partitions.dropBefore(cutoff);
  }

  /** SQLite: the file is in incremental auto-vacuum mode (typeorm.backend.ts); the pages the prune
   * freed are given back in steps, each a write of its own in the writer thread. */
  override async reclaimStep(): Promise<boolean> {
    if (this.store.dialect !== 'sqlite') return false;
    const { freed, left } = (await this.store.sqliteWrite({ type: 'vacuum', pages: VACUUM_STEP_PAGES })) as { freed: number; left: number };
    // None left, or none given back (a file not in incremental mode: its VACUUM at start-up failed).
    return left > 0 && freed > 0;
  }
}

/**
 * The error code when the database refused the rows for what they hold (it answered, and would answer
 * the same again), else null (unreachable, out of space, locked, read-only: worth a retry).
 * PostgreSQL SQLSTATE classes 22 (data exception), 23 (constraint violation), 54 (program limit, e.g.
 * a value too large); SQLite constraint failures (CHECK, triggers' RAISE), SQLITE_TOOBIG, SQLITE_MISMATCH.
 */
function refusalCode(error: unknown): string | null {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return null;
  if (/^(22|23|54)[0-9A-Z]{3}$/.test(code)) return code;
  if (/^SQLITE_(CONSTRAINT|TOOBIG|MISMATCH)/.test(code)) return code;
  return null;
}

function filtered(select: SelectQueryBuilder<AuditLogEntity>, query: AuditQuery): SelectQueryBuilder<AuditLogEntity> {
  if (query.since !== undefined) select.andWhere('a.ts >= :since', { since: query.since });
  if (query.until !== undefined) select.andWhere('a.ts < :until', { until: query.until });
  if (query.kind !== undefined) {
    if (query.kind.endsWith('*')) {
      // A range rather than LIKE: no wildcard escaping, case-sensitive in SQLite too, and it uses (kind, ts).
      const prefix = query.kind.slice(0, -1);
      const bound = prefixUpperBound(prefix);
      select.andWhere('a.kind >= :kindFrom', { kindFrom: prefix });
      if (bound !== null) select.andWhere('a.kind < :kindTo', { kindTo: bound });
    } else {
      select.andWhere('a.kind = :kind', { kind: query.kind });
    }
  }
  if (query.keyId !== undefined) select.andWhere('a.keyId = :keyId', { keyId: query.keyId });
  if (query.tenantId !== undefined) select.andWhere('a.tenantId = :tenantId', { tenantId: query.tenantId });
  return select;
}
