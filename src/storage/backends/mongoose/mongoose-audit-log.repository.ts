import { QueryFilter } from 'mongoose';
import { AuditLogRepository, AuditRecordRejected } from '../../ports/audit-log.repository';
import { AuditPosition, AuditQuery, AuditRecord, isAuditPosition } from '../../../audit/domain/audit-record';
import { Page, encodeCursor } from '../../../common/page';
import { auditFromDoc, auditToDoc, prefixRegex } from './mongoose.mappers';
import { AuditDoc, MongooseModels, duplicateCount } from './mongoose.schemas';
import { readCursor } from '../../../common/errors/storage-errors';

type Filter = QueryFilter<AuditDoc>;

function queryFilter(query: AuditQuery): Filter[] {
  const parts: Filter[] = [];
  if (query.since !== undefined) parts.push({ ts: { $gte: query.since } });
  if (query.until !== undefined) parts.push({ ts: { $lt: query.until } });
  if (query.kind !== undefined) {
    parts.push({ kind: query.kind.endsWith('*') ? prefixRegex(query.kind.slice(0, -1)) : query.kind });
  }
  if (query.keyId !== undefined) parts.push({ key_id: query.keyId });
  if (query.tenantId !== undefined) parts.push({ tenant_id: query.tenantId });
  return parts;
}

/** Keyset condition: rows strictly before (`$lt`) or after (`$gt`) a position in (ts, _id) order. */
function beyond(position: AuditPosition, op: '$lt' | '$gt'): Filter {
  return { $or: [{ ts: { [op]: position.ts } }, { ts: position.ts, _id: { [op]: position.id } }] };
}

function all(parts: Filter[]): Filter {
  return parts.length === 0 ? {} : parts.length === 1 ? parts[0] : { $and: parts };
}

/**
 * Server error codes that refuse a document for what it holds: BadValue, TypeMismatch, Overflow, field
 * names MongoDB will not store (`$`-prefixed, empty, dotted, on older servers), DocumentValidationFailure,
 * BSONObjectTooLarge, KeyTooLong. Others (not primary, shutting down, timeouts) are worth a retry.
 */
const DATA_ERROR_CODES = new Set([2, 14, 15, 52, 55, 56, 57, 121, 10334, 17280]);

/**
 * The code when MongoDB refused documents for their content (per-document write errors other than
 * duplicates, or the driver could not encode one as BSON), else null. With `ordered: false` the other
 * documents of the call were inserted.
 */
function refusalCode(error: unknown): string | null {
  if ((error as { bsonError?: unknown })?.bsonError === true) return 'BSONError';
  const writeErrors = (error as { writeErrors?: unknown })?.writeErrors;
  const list: unknown[] = writeErrors == null ? [error] : Array.isArray(writeErrors) ? writeErrors : [writeErrors];
  const code = list.map((e) => (e as { code?: unknown })?.code).find((c) => c !== 11000);
  return typeof code === 'number' && DATA_ERROR_CODES.has(code) ? String(code) : null;
}

const TTL_INDEX = 'audit_ttl';
/** NotImplemented, CommandNotSupported, InvalidOptions: the server has no TTL indexes. */
const NOT_SUPPORTED_CODES = new Set([238, 115, 72]);

/** The audit trail in one collection; record ids are the primary key, so re-appends are skipped. */
export class MongooseAuditLogRepository extends AuditLogRepository {
  /** The TTL index's expireAfterSeconds as last set by this instance. */
  private ttlSeconds: number | null = null;

  constructor(private readonly models: MongooseModels) {
    super();
  }

  async append(records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      // lean: the mapper already produces storable documents; skip hydrating every record.
      await this.models.audit.insertMany(records.map(auditToDoc), { ordered: false, lean: true });
    } catch (error) {
      if (duplicateCount(error) !== null) return;
      const refusal = refusalCode(error);
      throw refusal === null ? error : new AuditRecordRejected(`mongodb ${refusal}`);
    }
  }

  async query(query: AuditQuery, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
    const before = readCursor(cursor, isAuditPosition);
    const parts = queryFilter(query);
    if (before !== null) parts.push(beyond(before, '$lt'));
    const docs = await this.models.audit
      .find(all(parts))
      .sort({ ts: -1, _id: -1 })
      .limit(limit + 1)
      .lean<AuditDoc[]>();
    const items = docs.slice(0, limit).map(auditFromDoc);
    const last = items[items.length - 1];
    return { items, nextCursor: docs.length > limit ? encodeCursor({ ts: last.ts, id: last.id }) : null };
  }

  async *scan(query: AuditQuery, batchSize: number): AsyncIterable<AuditRecord[]> {
    let after: AuditPosition | null = null;
    for (;;) {
      const parts = queryFilter(query);
      if (after !== null) parts.push(beyond(after, '$gt'));
      const docs = await this.models.audit.find(all(parts)).sort({ ts: 1, _id: 1 }).limit(batchSize).lean<AuditDoc[]>();
      if (docs.length === 0) return;
      const batch = docs.map(auditFromDoc);
      yield batch;
      if (batch.length < batchSize) return;
      const last = batch[batch.length - 1];
      after = { ts: last.ts, id: last.id };
    }
  }

  async deleteOlderThan(cutoff: number, maxRows: number): Promise<number> {
    if (maxRows <= 0) return 0;
    // deleteMany has no limit: pick the oldest ids first so one prune stays bounded.
    const docs = await this.models.audit
      .find({ ts: { $lt: cutoff } }, { _id: 1 })
      .sort({ ts: 1, _id: 1 })
      .limit(maxRows)
      .lean<Pick<AuditDoc, '_id'>[]>();
    if (docs.length === 0) return 0;
    const result = await this.models.audit.deleteMany({ _id: { $in: docs.map((d) => d._id) } });
    return result.deletedCount;
  }

  async count(): Promise<number> {
    return this.models.audit.countDocuments();
  }

  async oldestTs(): Promise<number | null> {
    const doc = await this.models.audit.findOne({}, { ts: 1 }).sort({ ts: 1, _id: 1 }).lean<Pick<AuditDoc, 'ts'>>();
    return doc === null ? null : Number(doc.ts);
  }

  override approximateCount(): Promise<number> {
    return this.models.audit.estimatedDocumentCount();
  }

  /**
   * The server expires rows itself: a TTL index on `at` (the row's ts as a date) with the retention as
   * `expireAfterSeconds`, created on the first run and changed in place (collMod) when the retention
   * changes. MongoDB's TTL monitor deletes once a minute; the retention job's batches stay the backstop
   * (rows written before `at` existed, a server whose TTL monitor is off or lagging).
   */
  override async prepareRetention(retentionMs: number): Promise<void> {
    const seconds = Math.max(1, Math.round(retentionMs / 1000));
    if (this.ttlSeconds === seconds) return;
    const collection = this.models.audit.collection;
    try {
      const existing = (await collection.indexes()).find((index) => index.name === TTL_INDEX);
      if (existing === undefined) {
        await collection.createIndex({ at: 1 }, { name: TTL_INDEX, expireAfterSeconds: seconds });
      } else if (existing.expireAfterSeconds !== seconds) {
        await collection.db.command({ collMod: collection.collectionName, index: { name: TTL_INDEX, expireAfterSeconds: seconds } });
      }
    } catch (error) {
      // A server without TTL indexes (FerretDB 1.x answers NotImplemented): the batches do all of it.
      if (!NOT_SUPPORTED_CODES.has((error as { code?: unknown }).code as number)) throw error;
    }
    this.ttlSeconds = seconds;
  }
}
