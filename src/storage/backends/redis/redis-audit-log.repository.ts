import { Redis } from 'ioredis';
import { AuditLogRepository, AuditRecordRejected } from '../../ports/audit-log.repository';
import { AuditQuery, AuditRecord } from '../../../audit/domain/audit-record';
import { encodeCursor, Page } from '../../../common/page';
import { auditIndexFieldsFromJson, auditRecordFromJson, auditRecordToJson, idOfMember, indexMember, tsPrefix } from './redis-audit.mapper';
import { RedisKeys } from './redis-keys';
import { runScript } from './redis-scripts';
import { readCursor } from '../../../common/errors/storage-errors';

const APPEND_BATCH = 500;
const DELETE_BATCH = 500;
const MIN_CHUNK = 100;
const MAX_CHUNK = 1000;

type Direction = 'asc' | 'desc';

interface Hit {
  member: string;
  record: AuditRecord;
}

function isMemberCursor(v: unknown): v is { m: string } {
  return typeof v === 'object' && v !== null && typeof (v as { m?: unknown }).m === 'string' && /^\d{13}:/.test((v as { m: string }).m);
}

function matches(r: AuditRecord, q: AuditQuery): boolean {
  if (q.since !== undefined && r.ts < q.since) return false;
  if (q.until !== undefined && r.ts >= q.until) return false;
  if (q.keyId !== undefined && r.keyId !== q.keyId) return false;
  if (q.tenantId !== undefined && r.tenantId !== q.tenantId) return false;
  if (q.kind !== undefined) {
    return q.kind.endsWith('*') ? r.kind.startsWith(q.kind.slice(0, -1)) : r.kind === q.kind;
  }
  return true;
}

/**
 * Records as JSON in one hash (id -> record). Index members are `<13-digit ts>:<id>` in lex zsets
 * (score 0), so each index is ordered by (ts, id) and ranges/cursors are ZRANGEBYLEX bounds: one
 * index over all records, one per kind, per key id and per tenant, plus a lex zset of the kinds
 * in use so that a kind prefix (`admin.*`) becomes a merge of the matching kinds' indexes.
 * Nothing ever walks the keyspace.
 */
export class RedisAuditLogRepository extends AuditLogRepository {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    super();
  }

  async append(records: AuditRecord[]): Promise<void> {
    const a = this.keys.audit;
    for (let i = 0; i < records.length; i += APPEND_BATCH) {
      const args = records.slice(i, i + APPEND_BATCH).flatMap((r) => [
        r.id,
        indexMember(r),
        auditRecordToJson(r),
        r.kind,
        a.byKindPrefix + r.kind,
        r.keyId === null ? '' : a.byKeyPrefix + r.keyId,
        r.tenantId === null ? '' : a.byTenantPrefix + r.tenantId,
      ]);
      try {
        await runScript(this.redis, 'auditAppend', [a.records, a.byTime, a.kinds], args);
      } catch (error) {
        // audit-append.lua answers REFUSED when Redis refused records (the others of the call are stored).
        const refused = /^REFUSED \d+ audit record\(s\): (\S+)/.exec((error as Error).message ?? '');
        throw refused ? new AuditRecordRejected(`redis ${refused[1]}`) : error;
      }
    }
  }

  async query(query: AuditQuery, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
    const pageSize = Math.max(1, limit);
    const after = readCursor(cursor, isMemberCursor)?.m ?? null;
    const hits = await this.collect(query, 'desc', after, pageSize + 1);
    const page = hits.slice(0, pageSize);
    return {
      items: page.map((h) => h.record),
      nextCursor: hits.length > pageSize ? encodeCursor({ m: page[page.length - 1].member }) : null,
    };
  }

  async *scan(query: AuditQuery, batchSize: number): AsyncIterable<AuditRecord[]> {
    const size = Math.max(1, batchSize);
    let after: string | null = null;
    for (;;) {
      const hits = await this.collect(query, 'asc', after, size);
      if (hits.length > 0) yield hits.map((h) => h.record);
      if (hits.length < size) return;
      after = hits[hits.length - 1].member;
    }
  }

  /** Batches: read the oldest index members below the cutoff and their records here, then remove
   * each record with all its index entries in one script (see lua/audit-delete.lua). */
  async deleteOlderThan(cutoff: number, maxRows: number): Promise<number> {
    const a = this.keys.audit;
    let deleted = 0;
    while (deleted < maxRows) {
      const batch = Math.min(DELETE_BATCH, maxRows - deleted);
      const members = await this.redis.zrangebylex(a.byTime, '-', `(${tsPrefix(cutoff)}`, 'LIMIT', 0, batch);
      if (members.length === 0) break;
      const docs = await this.redis.hmget(a.records, ...members.map(idOfMember));
      const args = members.flatMap((member, i) => {
        const json = docs[i];
        const r = json === null ? null : auditIndexFieldsFromJson(json);
        return [
          idOfMember(member),
          member,
          r?.kind ?? '',
          r === null ? '' : a.byKindPrefix + r.kind,
          r?.keyId == null ? '' : a.byKeyPrefix + r.keyId,
          r?.tenantId == null ? '' : a.byTenantPrefix + r.tenantId,
        ];
      });
      deleted += Number(await runScript(this.redis, 'auditDelete', [a.records, a.byTime, a.kinds], args));
      if (members.length < batch) break;
    }
    return deleted;
  }

  count(): Promise<number> {
    return this.redis.hlen(this.keys.audit.records);
  }

  async oldestTs(): Promise<number | null> {
    const [first] = await this.redis.zrange(this.keys.audit.byTime, 0, 0);
    return first === undefined ? null : Number(first.slice(0, 13));
  }

  /** The index zsets holding every record the query can match: the most selective one available. */
  private async sources(q: AuditQuery): Promise<string[]> {
    const a = this.keys.audit;
    if (q.keyId !== undefined) return [a.byKeyPrefix + q.keyId];
    if (q.tenantId !== undefined) return [a.byTenantPrefix + q.tenantId];
    if (q.kind !== undefined && !q.kind.endsWith('*')) return [a.byKindPrefix + q.kind];
    const kindPrefix = q.kind?.slice(0, -1);
    if (!kindPrefix) return [a.byTime];
    const kinds = await this.redis.zrangebylex(a.kinds, `[${kindPrefix}`, '+');
    const cut = kinds.findIndex((k) => !k.startsWith(kindPrefix));
    return (cut === -1 ? kinds : kinds.slice(0, cut)).map((k) => a.byKindPrefix + k);
  }

  /**
   * Up to `wanted` matching records strictly after the member `after` in `direction`: reads the
   * sources in chunks (merged when there are several), filters the records, and keeps going until
   * enough match or every source is exhausted.
   */
  private async collect(q: AuditQuery, direction: Direction, after: string | null, wanted: number): Promise<Hit[]> {
    const sources = await this.sources(q);
    const hits: Hit[] = [];
    const chunk = Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, wanted));
    let bound = after;
    while (hits.length < wanted && sources.length > 0) {
      const { members, exhausted } = await this.readChunk(sources, q, direction, bound, chunk);
      if (members.length > 0) {
        const docs = await this.redis.hmget(this.keys.audit.records, ...members.map(idOfMember));
        docs.forEach((json, i) => {
          if (json === null) return; // pruned since the index was read
          const record = auditRecordFromJson(json);
          if (matches(record, q) && hits.length < wanted) hits.push({ member: members[i], record });
        });
        bound = members[members.length - 1];
      }
      if (exhausted) break;
    }
    return hits;
  }

  private async readChunk(
    sources: string[],
    q: AuditQuery,
    direction: Direction,
    after: string | null,
    chunk: number,
  ): Promise<{ members: string[]; exhausted: boolean }> {
    // `[<ts>` / `(<ts>` bounds work because a member `<ts>:<id>` sorts after its bare ts prefix.
    let low = q.since === undefined ? '-' : `[${tsPrefix(q.since)}`;
    let high = q.until === undefined ? '+' : `(${tsPrefix(q.until)}`;
    if (after !== null) {
      if (direction === 'desc' && (high === '+' || after < high.slice(1))) high = `(${after}`;
      if (direction === 'asc' && (low === '-' || after >= low.slice(1))) low = `(${after}`;
    }
    const pipeline = this.redis.pipeline();
    for (const key of sources) {
      if (direction === 'desc') pipeline.zrevrangebylex(key, high, low, 'LIMIT', 0, chunk);
      else pipeline.zrangebylex(key, low, high, 'LIMIT', 0, chunk);
    }
    const lists = ((await pipeline.exec()) ?? []).map(([err, members]) => {
      if (err) throw err;
      return members as string[];
    });
    const full = lists.some((l) => l.length === chunk);
    if (lists.length === 1) return { members: lists[0], exhausted: !full };
    const merged = lists.flat().sort();
    if (direction === 'desc') merged.reverse();
    // Beyond the first `chunk` merged members a source may hold unread members in between.
    return { members: merged.slice(0, chunk), exhausted: !full && merged.length <= chunk };
  }
}
