/** One audit event (docs/audit.md). `payload` never holds a secret (tokens, authorization, upstream keys). */
export interface AuditRecord {
  /** Unique and time-ordered (see newAuditId); also the tie-breaker for equal timestamps. */
  id: string;
  /** Epoch ms. */
  ts: number;
  /** `proxy`, `proxy.blocked`, `proxy.error`, `admin.<entity>.<action>`, … */
  kind: string;
  requestId: string | null;
  keyId: string | null;
  tenantId: string | null;
  payload: Record<string, unknown>;
}

export interface AuditQuery {
  /** Inclusive lower bound on ts (epoch ms). */
  since?: number;
  /** Exclusive upper bound on ts (epoch ms). */
  until?: number;
  /** Exact kind, or a prefix when it ends with `*` (`admin.*` matches `admin.key.create`). */
  kind?: string;
  keyId?: string;
  tenantId?: string;
}

/** Keyset position in the (ts, id) order; encoded with encodeCursor for the API. */
export interface AuditPosition {
  ts: number;
  id: string;
}

export function isAuditPosition(value: unknown): value is AuditPosition {
  const v = value as AuditPosition;
  return typeof v === 'object' && v !== null && Number.isSafeInteger(v.ts) && typeof v.id === 'string';
}

/** The `kind` filter: exact, or a prefix when the pattern ends with `*`. */
export function kindMatches(kind: string, pattern: string): boolean {
  return pattern.endsWith('*') ? kind.startsWith(pattern.slice(0, -1)) : kind === pattern;
}

/** Orders audit records by (ts, id) ascending. */
export function compareAuditOrder(a: AuditPosition, b: AuditPosition): number {
  return a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
