/** One audit event (DESIGN §7). `payload` never holds a secret (tokens, authorization, upstream keys). */
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
