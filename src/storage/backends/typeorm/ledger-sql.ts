/** ledger.ts `rolledOver` in SQL: the row's window has ended at `now`. In an UPDATE every expression
 * sees the row as it was, so all SET clauses agree on whether it rolled over. */
const rolled = (now: string) => `(period_ms IS NOT NULL AND ${now} >= window_start + period_ms)`;

/** The ledger's statements on SQLite (reserve/commit/release run them synchronously) and, for the
 * operations that are not PL/pgSQL functions, on PostgreSQL. `$n` parameters. */
export const ledgerSql = (scopes: string, reservations: string) => ({
  /** $1 kind, $2 id, $3 scopes JSON, $4 amount, $5 created_at. Changes no row when the id is outstanding. */
  insertReservation: `INSERT INTO ${reservations} (kind, id, scopes, amount, created_at) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (kind, id) DO NOTHING`,
  /** $1 kind, $2 id. Of concurrent settles of one id, only one gets the row back. */
  takeReservation: `DELETE FROM ${reservations} WHERE kind = $1 AND id = $2 RETURNING scopes, amount`,
  /** $1 kind, $2 scope. */
  selectScope: `SELECT limit_value, spent, reserved, period_ms, window_start, updated_at FROM ${scopes} WHERE kind = $1 AND scope = $2`,
  /** $1 kind, $2 scope, $3 now: an unlimited scope, unless it exists. */
  createScope: `INSERT INTO ${scopes} (kind, scope, limit_value, spent, reserved, period_ms, window_start, updated_at)
    VALUES ($1, $2, NULL, 0, 0, NULL, 0, $3) ON CONFLICT (kind, scope) DO NOTHING`,
  /** Guarded reserve on one scope: $1 kind, $2 scope, $3 amount, $4 now. Changes no row when it refuses. */
  reserve: `UPDATE ${scopes} SET
    spent = CASE WHEN ${rolled('$4')} THEN 0 ELSE spent END,
    window_start = CASE WHEN ${rolled('$4')} THEN $4 - $4 % period_ms ELSE window_start END,
    reserved = reserved + $3,
    updated_at = $4
  WHERE kind = $1 AND scope = $2
    AND (limit_value IS NULL OR (CASE WHEN ${rolled('$4')} THEN 0 ELSE spent END) + reserved + $3 <= limit_value)`,
  /** Commit on one scope: $1 kind, $2 scope, $3 reserved amount, $4 actual, $5 now. */
  commit: `UPDATE ${scopes} SET
    spent = (CASE WHEN ${rolled('$5')} THEN 0 ELSE spent END) + $4,
    window_start = CASE WHEN ${rolled('$5')} THEN $5 - $5 % period_ms ELSE window_start END,
    reserved = CASE WHEN reserved > $3 THEN reserved - $3 ELSE 0 END,
    updated_at = $5
  WHERE kind = $1 AND scope = $2`,
  /** Release on one scope (spend untouched, so no window arithmetic): $1 kind, $2 scope, $3 amount, $4 now. */
  unreserve: `UPDATE ${scopes} SET reserved = CASE WHEN reserved > $3 THEN reserved - $3 ELSE 0 END, updated_at = $4
    WHERE kind = $1 AND scope = $2`,
});
