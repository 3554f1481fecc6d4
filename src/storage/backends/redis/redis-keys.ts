export type LedgerKind = 'tokens' | 'usd_micros';

/** Every key the adapter touches, all under `<prefix>:`. */
export class RedisKeys {
  readonly changes: string;
  readonly vk: { records: string; byToken: string; tokenOf: string; ids: string };
  /** Scope rate limits: scope -> JSON, and the lex-ordered zset of scopes for keyset paging. */
  readonly rateLimits: { records: string; scopes: string };
  readonly audit: {
    records: string;
    byTime: string;
    kinds: string;
    byKindPrefix: string;
    byKeyPrefix: string;
    byTenantPrefix: string;
  };

  constructor(readonly prefix: string) {
    this.changes = `${prefix}:changes`;
    this.vk = {
      records: `${prefix}:vk:records`,
      byToken: `${prefix}:vk:by-token`,
      tokenOf: `${prefix}:vk:token-of`,
      ids: `${prefix}:vk:ids`,
    };
    this.rateLimits = {
      records: `${prefix}:ratelimits`,
      scopes: `${prefix}:ratelimits:scopes`,
    };
    const audit = `${prefix}:audit`;
    this.audit = {
      records: `${audit}:records`,
      byTime: `${audit}:by-time`,
      kinds: `${audit}:kinds`,
      byKindPrefix: `${audit}:by-kind:`,
      byKeyPrefix: `${audit}:by-key:`,
      byTenantPrefix: `${audit}:by-tenant:`,
    };
  }

  /** The lease of one job lock (JobLock). */
  lock(name: string): string {
    return `${this.prefix}:lock:${name}`;
  }

  ledger(kind: LedgerKind): { scopePrefix: string; scopes: string; reservationPrefix: string; reservations: string } {
    const base = `${this.prefix}:ledger:${kind}`;
    return {
      scopePrefix: `${base}:scope:`,
      scopes: `${base}:scopes`,
      reservationPrefix: `${base}:res:`,
      reservations: `${base}:reservations`,
    };
  }
}
