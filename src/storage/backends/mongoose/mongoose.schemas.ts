import { Connection, Model, Schema, mongo } from 'mongoose';

/**
 * Integers (amounts, epoch ms) are written as BSON int64 (`bigint` on the way in); the driver reads
 * int64 back as a JS number while it is a safe integer, so documents read may hold either.
 */
export type Int64 = bigint | number;

export interface VirtualKeyDoc {
  _id: string;
  name: string | null;
  token_hash: string;
  token_prefix: string;
  enabled: boolean;
  expires_at: Int64 | null;
  tenant_id: string | null;
  project_id: string | null;
  user_id: string | null;
  models: string[];
  /** Absent on keys written before per-key routes: read as `[]` (every route). */
  allowed_routes?: string[];
  limits: { rpm: Int64 | null; tpm: Int64 | null };
  /** Absent on keys written before the response cache: read as `{ ttl_secs: null }`. */
  cache?: { ttl_secs: Int64 | null };
  budget: { total_tokens: Int64 | null; total_usd_micros: Int64 | null };
  route: string | null;
  metadata: Record<string, unknown>;
  created_at: Int64;
  updated_at: Int64;
}

/**
 * One row per (ledger kind, scope): the token and cost ledgers share the collection, apart by kind.
 * `window_end` and `headroom` are derived from the other fields and kept in step by every write, so
 * that a reserve is one plain guarded `$inc` (see MongooseLedger). Rows written before they existed
 * lack both and are completed the first time they are touched.
 */
export interface LedgerScopeDoc {
  kind: string;
  scope: string;
  limit: Int64 | null;
  spent: Int64;
  reserved: Int64;
  period_ms: Int64 | null;
  window_start: Int64;
  updated_at: Int64;
  /** window_start + period_ms; NO_WINDOW_END for a scope without a period. */
  window_end?: Int64;
  /** (limit ?? 0) - spent - reserved: what a reserve may still take when there is a limit. */
  headroom?: Int64;
}

/** The rate limits set on one scope (ScopeRateLimitRepository). */
export interface RateLimitDoc {
  scope: string;
  rpm: Int64 | null;
  tpm: Int64 | null;
  updated_at: Int64;
}

export interface ReservationDoc {
  /** `<kind>:<reservation id>`, so the primary key alone makes a reservation unique per ledger. */
  _id: string;
  kind: string;
  reservation_id: string;
  scopes: string[];
  amount: Int64;
  created_at: Int64;
}

export interface AuditDoc {
  _id: string;
  ts: Int64;
  kind: string;
  request_id: string | null;
  key_id: string | null;
  tenant_id: string | null;
  /** JSON text (older rows: the object itself). */
  payload: string | Record<string, unknown>;
  /** `ts` as a date, for the TTL index (rows written before it have none: the retention job prunes those). */
  at?: Date;
}

export interface ChangeDoc {
  seq: Int64;
  entity: string;
  entity_id: string;
  /** Wall-clock time, only for pruning old changes (MongooseChangeFeed). */
  at: Date;
}

export interface CounterDoc {
  _id: string;
  seq: Int64;
}

/** The lease of one job lock (JobLock), keyed by the lock's name. */
export interface JobLeaseDoc {
  _id: string;
  holder: string;
  /** Epoch ms after which the lease no longer holds. */
  expires_at: Int64;
}

const int64 = { type: BigInt, default: null };
const int64Required = { type: BigInt, required: true };
const nullableString = { type: String, default: null };
// minimize: false keeps empty objects (metadata {}, payload {}) so they round-trip exactly.
const options = { versionKey: false, minimize: false } as const;

const virtualKeySchema = new Schema(
  {
    _id: { type: String, required: true },
    name: nullableString,
    token_hash: { type: String, required: true, unique: true },
    token_prefix: { type: String, default: '' },
    enabled: { type: Boolean, required: true },
    expires_at: int64,
    tenant_id: nullableString,
    project_id: nullableString,
    user_id: nullableString,
    models: { type: [String], default: [] },
    allowed_routes: { type: [String], default: [] },
    limits: { rpm: int64, tpm: int64 },
    cache: { ttl_secs: int64 },
    budget: { total_tokens: int64, total_usd_micros: int64 },
    route: nullableString,
    metadata: { type: Schema.Types.Mixed, default: {} },
    created_at: int64Required,
    updated_at: int64Required,
  },
  options,
);
// Admin list filters, each ending in _id so the keyset order needs no in-memory sort.
virtualKeySchema.index({ tenant_id: 1, project_id: 1, _id: 1 });
virtualKeySchema.index({ user_id: 1, _id: 1 });

const ledgerScopeSchema = new Schema(
  {
    kind: { type: String, required: true },
    scope: { type: String, required: true },
    limit: int64,
    spent: int64Required,
    reserved: int64Required,
    period_ms: int64,
    window_start: int64Required,
    updated_at: int64Required,
    window_end: int64,
    headroom: int64,
  },
  options,
);
ledgerScopeSchema.index({ kind: 1, scope: 1 }, { unique: true });

const rateLimitSchema = new Schema(
  {
    scope: { type: String, required: true },
    rpm: int64,
    tpm: int64,
    updated_at: int64Required,
  },
  options,
);
rateLimitSchema.index({ scope: 1 }, { unique: true });

const reservationSchema = new Schema(
  {
    _id: { type: String, required: true },
    kind: { type: String, required: true },
    reservation_id: { type: String, required: true },
    scopes: { type: [String], required: true },
    amount: int64Required,
    created_at: int64Required,
  },
  options,
);
reservationSchema.index({ kind: 1, created_at: 1 });

const auditSchema = new Schema(
  {
    _id: { type: String, required: true },
    ts: int64Required,
    kind: { type: String, required: true },
    request_id: nullableString,
    key_id: nullableString,
    tenant_id: nullableString,
    payload: { type: Schema.Types.Mixed, default: {} },
    at: { type: Date },
  },
  options,
);
// Every index ends in (ts, _id): the keyset order of query (desc), scan (asc) and pruning (asc).
auditSchema.index({ ts: 1, _id: 1 });
auditSchema.index({ kind: 1, ts: 1, _id: 1 });
auditSchema.index({ key_id: 1, ts: 1, _id: 1 });
auditSchema.index({ tenant_id: 1, ts: 1, _id: 1 });

const changeSchema = new Schema(
  {
    seq: int64Required,
    entity: { type: String, required: true },
    entity_id: { type: String, required: true },
    at: { type: Date, required: true },
  },
  options,
);
changeSchema.index({ seq: 1 }, { unique: true });
// No TTL index on `at`: the feed prunes old changes itself (MongooseChangeFeed), because not every
// server behind the MongoDB protocol has TTL indexes. Databases created before keep their `at_1` TTL
// index; it prunes the same documents and does no harm. A plain index on `at` would clash with it
// (same key, other options), and the collection holds only minutes of admin changes: none is declared.

const counterSchema = new Schema({ _id: { type: String, required: true }, seq: int64Required }, options);

const jobLeaseSchema = new Schema(
  { _id: { type: String, required: true }, holder: { type: String, required: true }, expires_at: int64Required },
  options,
);

export interface MongooseModels {
  keys: Model<VirtualKeyDoc>;
  scopes: Model<LedgerScopeDoc>;
  reservations: Model<ReservationDoc>;
  audit: Model<AuditDoc>;
  rateLimits: Model<RateLimitDoc>;
  changes: Model<ChangeDoc>;
  counters: Model<CounterDoc>;
  leases: Model<JobLeaseDoc>;
}

/** Every model: its name, schema and collection (`MongooseModule.forFeature` takes this list as is). */
export const MODEL_DEFINITIONS = {
  keys: { name: 'VirtualKey', schema: virtualKeySchema, collection: 'virtual_keys' },
  scopes: { name: 'LedgerScope', schema: ledgerScopeSchema, collection: 'ledger_scopes' },
  reservations: { name: 'LedgerReservation', schema: reservationSchema, collection: 'ledger_reservations' },
  audit: { name: 'AuditRecord', schema: auditSchema, collection: 'audit_log' },
  rateLimits: { name: 'RateLimit', schema: rateLimitSchema, collection: 'rate_limits' },
  changes: { name: 'Change', schema: changeSchema, collection: 'changes' },
  counters: { name: 'Counter', schema: counterSchema, collection: 'counters' },
  leases: { name: 'JobLease', schema: jobLeaseSchema, collection: 'job_leases' },
} satisfies Record<keyof MongooseModels, { name: string; schema: Schema; collection: string }>;

/** Models bound to one connection (never the global mongoose one), so instances stay independent. */
export function createModels(connection: Connection): MongooseModels {
  const model = (key: keyof MongooseModels) => {
    const { name, schema, collection } = MODEL_DEFINITIONS[key];
    return connection.model(name, schema, collection);
  };
  return Object.fromEntries(Object.keys(MODEL_DEFINITIONS).map((key) => [key, model(key as keyof MongooseModels)])) as unknown as MongooseModels;
}

/** Builds every declared index (idempotent; safe when several instances open at once). */
export async function createIndexes(models: MongooseModels): Promise<void> {
  await Promise.all(Object.values(models).map((model: Model<unknown>) => model.createIndexes()));
}

/**
 * The driver collection behind a model, typed by its documents. Used for `$expr` guards and update
 * pipelines, which must reach the server exactly as written (Mongoose would cast parts of them).
 */
export function driverCollection<T extends mongo.Document>(model: Model<T>): mongo.Collection<T> {
  return model.collection as unknown as mongo.Collection<T>;
}

export function isDuplicateKey(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 11000;
}

/**
 * Two concurrent upserts of one new document (same unique key) can both try to insert; the loser gets a
 * duplicate key error, and running it again updates the document the winner created.
 */
export async function retryOnDuplicate<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (!isDuplicateKey(error)) throw error;
    return operation();
  }
}

/**
 * For an insertMany(ordered: false) failure: how many documents were refused as duplicates, or null
 * when any refusal had another cause (which the caller must rethrow).
 */
export function duplicateCount(error: unknown): number | null {
  const writeErrors = (error as { writeErrors?: unknown } | null)?.writeErrors;
  if (writeErrors === undefined || writeErrors === null) return isDuplicateKey(error) ? 1 : null;
  const list: unknown[] = Array.isArray(writeErrors) ? writeErrors : [writeErrors];
  return list.length > 0 && list.every(isDuplicateKey) ? list.length : null;
}
