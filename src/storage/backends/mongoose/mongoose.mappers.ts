import { AuditRecord } from '../../../audit/domain/audit-record';
import { LedgerScope, Reservation } from '../../ports/ledger';
import { ScopeRateLimit } from '../../ports/scope-rate-limit.repository';
import { VirtualKey } from '../../../virtual-keys/domain/virtual-key';
import { AuditDoc, LedgerScopeDoc, RateLimitDoc, ReservationDoc, VirtualKeyDoc } from './mongoose.schemas';

/** A domain integer as BSON int64 (throws on a non-integer rather than storing a double). */
export function int64(value: number): bigint {
  return BigInt(value);
}

function int64OrNull(value: number | null): bigint | null {
  return value === null ? null : BigInt(value);
}

/** Reads an integer however the driver returned it (number, bigint or a bson Long). */
export function num(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'object' && value !== null && 'toNumber' in value && typeof value.toNumber === 'function') {
    return Number(value.toNumber());
  }
  throw new TypeError(`expected an integer, got ${typeof value}`);
}

function numOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : num(value);
}

export function keyToDoc(key: VirtualKey): VirtualKeyDoc {
  return {
    _id: key.id,
    name: key.name,
    token_hash: key.tokenHash,
    token_prefix: key.tokenPrefix,
    enabled: key.enabled,
    expires_at: int64OrNull(key.expiresAt),
    tenant_id: key.tenantId,
    project_id: key.projectId,
    user_id: key.userId,
    models: [...key.models],
    allowed_routes: [...key.allowedRoutes],
    limits: { rpm: int64OrNull(key.limits.rpm), tpm: int64OrNull(key.limits.tpm) },
    cache: { ttl_secs: int64OrNull(key.cache.ttlSecs) },
    budget: { total_tokens: int64OrNull(key.budget.totalTokens), total_usd_micros: int64OrNull(key.budget.totalUsdMicros) },
    route: key.route,
    metadata: key.metadata,
    created_at: int64(key.createdAt),
    updated_at: int64(key.updatedAt),
  };
}

export function keyFromDoc(doc: VirtualKeyDoc): VirtualKey {
  return {
    id: doc._id,
    name: doc.name ?? null,
    tokenHash: doc.token_hash,
    tokenPrefix: doc.token_prefix,
    enabled: doc.enabled,
    expiresAt: numOrNull(doc.expires_at),
    tenantId: doc.tenant_id ?? null,
    projectId: doc.project_id ?? null,
    userId: doc.user_id ?? null,
    models: [...(doc.models ?? [])],
    allowedRoutes: [...(doc.allowed_routes ?? [])],
    limits: { rpm: numOrNull(doc.limits?.rpm), tpm: numOrNull(doc.limits?.tpm) },
    cache: { ttlSecs: numOrNull(doc.cache?.ttl_secs) },
    budget: { totalTokens: numOrNull(doc.budget?.total_tokens), totalUsdMicros: numOrNull(doc.budget?.total_usd_micros) },
    route: doc.route ?? null,
    metadata: doc.metadata ?? {},
    createdAt: num(doc.created_at),
    updatedAt: num(doc.updated_at),
  };
}

/**
 * `window_end` of a scope without a period: a window that never ends (epoch ms far beyond any clock),
 * so "the window is current" is one range condition for every scope. A safe integer, so it reads back
 * as a plain number.
 */
export const NO_WINDOW_END = Number.MAX_SAFE_INTEGER;

/** The derived fields of a scope row (LedgerScopeDoc). */
export function scopeDerived(scope: Pick<LedgerScope, 'limit' | 'spent' | 'reserved' | 'periodMs' | 'windowStart'>): {
  window_end: bigint;
  headroom: bigint;
} {
  return {
    window_end: int64(scope.periodMs === null ? NO_WINDOW_END : scope.windowStart + scope.periodMs),
    headroom: int64((scope.limit ?? 0) - scope.spent - scope.reserved),
  };
}

export function scopeToDoc(kind: string, scope: LedgerScope): LedgerScopeDoc {
  return {
    kind,
    scope: scope.scope,
    limit: int64OrNull(scope.limit),
    spent: int64(scope.spent),
    reserved: int64(scope.reserved),
    period_ms: int64OrNull(scope.periodMs),
    window_start: int64(scope.windowStart),
    updated_at: int64(scope.updatedAt),
    ...scopeDerived(scope),
  };
}

export function scopeFromDoc(doc: LedgerScopeDoc): LedgerScope {
  return {
    scope: doc.scope,
    limit: numOrNull(doc.limit),
    spent: num(doc.spent),
    reserved: num(doc.reserved),
    periodMs: numOrNull(doc.period_ms),
    windowStart: num(doc.window_start),
    updatedAt: num(doc.updated_at),
  };
}

export function rateLimitToDoc(limit: ScopeRateLimit): RateLimitDoc {
  return { scope: limit.scope, rpm: int64OrNull(limit.rpm), tpm: int64OrNull(limit.tpm), updated_at: int64(limit.updatedAt) };
}

export function rateLimitFromDoc(doc: RateLimitDoc): ScopeRateLimit {
  return { scope: doc.scope, rpm: numOrNull(doc.rpm), tpm: numOrNull(doc.tpm), updatedAt: num(doc.updated_at) };
}

export function reservationKey(kind: string, id: string): string {
  return `${kind}:${id}`;
}

export function reservationToDoc(kind: string, reservation: Reservation): ReservationDoc {
  return {
    _id: reservationKey(kind, reservation.id),
    kind,
    reservation_id: reservation.id,
    scopes: [...reservation.scopes],
    amount: int64(reservation.amount),
    created_at: int64(reservation.createdAt),
  };
}

export function reservationFromDoc(doc: ReservationDoc): Reservation {
  return { id: doc.reservation_id, scopes: [...doc.scopes], amount: num(doc.amount), createdAt: num(doc.created_at) };
}

export function auditToDoc(record: AuditRecord): AuditDoc {
  return {
    _id: record.id,
    ts: int64(record.ts),
    kind: record.kind,
    request_id: record.requestId,
    key_id: record.keyId,
    tenant_id: record.tenantId,
    // As JSON text: audit payloads hold whatever clients sent (keys with `$` or `.`, arrays of arrays,
    // deep nesting) and a document field would be refused for some of it (FerretDB refuses all three;
    // MongoDB before 5.0 the keys). Nothing queries inside a payload.
    payload: JSON.stringify(record.payload),
    at: new Date(record.ts),
  };
}

export function auditFromDoc(doc: AuditDoc): AuditRecord {
  return {
    id: doc._id,
    ts: num(doc.ts),
    kind: doc.kind,
    requestId: doc.request_id ?? null,
    keyId: doc.key_id ?? null,
    tenantId: doc.tenant_id ?? null,
    // Rows written before payloads were stored as text hold the document itself.
    payload: typeof doc.payload === 'string' ? (JSON.parse(doc.payload) as Record<string, unknown>) : (doc.payload ?? {}),
  };
}

/** Matches strings starting with `prefix` (anchored, so an index on the field bounds the scan). */
export function prefixRegex(prefix: string): RegExp {
  return new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
}
