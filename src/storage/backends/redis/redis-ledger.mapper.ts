import { LedgerScope, Reservation } from '../../ports/ledger';

/** Field order of a scope hash as read with HMGET and as answered by the ledger scripts. */
export const SCOPE_FIELDS = ['limit', 'spent', 'reserved', 'period', 'ws', 'updated'] as const;

/** '' stands for null (unlimited / lifetime) in a scope hash. */
function nullable(value: string | null): number | null {
  return value === null || value === '' ? null : Number(value);
}

/** Values in SCOPE_FIELDS order; null when the scope hash does not exist. */
export function scopeFromFields(scope: string, v: (string | null)[]): LedgerScope | null {
  if (v[1] === null || v[1] === undefined) return null;
  return {
    scope,
    limit: nullable(v[0]),
    spent: Number(v[1]),
    reserved: Number(v[2]),
    periodMs: nullable(v[3]),
    windowStart: Number(v[4] ?? 0),
    updatedAt: Number(v[5] ?? 0),
  };
}

export function scopeToFields(s: LedgerScope): Record<(typeof SCOPE_FIELDS)[number], string> {
  return {
    limit: s.limit === null ? '' : String(s.limit),
    spent: String(s.spent),
    reserved: String(s.reserved),
    period: s.periodMs === null ? '' : String(s.periodMs),
    ws: String(s.windowStart),
    updated: String(s.updatedAt),
  };
}

/** A reservation hash (amount, created, n, scope:1..n); null when it does not exist (empty hash). */
export function reservationFromHash(id: string, h: Record<string, string>): Reservation | null {
  if (h.n === undefined) return null;
  const scopes = Array.from({ length: Number(h.n) }, (_, i) => h[`scope:${i + 1}`]);
  return { id, scopes, amount: Number(h.amount), createdAt: Number(h.created) };
}
