import { LessThan } from 'typeorm';
import { AccountingLedger, AccountingReserveResult, AccountingSettled, LedgerAmounts } from '../../../budgets/domain/accounting-ledger';
import { Ledger, LedgerScope, Reservation, ReserveResult, rolledOver, windowStartFor } from '../../../budgets/domain/ledger';
import { ErrorCode, GatewayError } from '../../../common/errors/gateway-error';
import { Page, decodeCursor, encodeCursor } from '../../../common/page';
import { LedgerReservationEntity } from './entities/ledger-reservation.entity';
import { LedgerScopeEntity } from './entities/ledger-scope.entity';
import { SettledRow, reservationValues, settledAmount, toLedgerScope, toReservation } from './mappers/ledger.mapper';
import { SqlSession, SyncSession, TypeormStore, prefixUpperBound } from './typeorm-store';

/** Rows of the two ledgers live in the same tables, told apart by this column. */
export type LedgerKind = 'tokens' | 'usd_micros';

const isString = (v: unknown): v is string => typeof v === 'string';

type Refusal = Extract<ReserveResult, { ok: false }>;

/** Thrown inside a reserve transaction to roll it back, carrying what to report; never leaves this file. */
class Refused extends Error {
  constructor(
    readonly kind: LedgerKind,
    readonly result: Refusal,
  ) {
    super(`scope ${result.scope} refused the reservation`);
  }
}

/** A scope row as raw SQL returns it. */
interface ScopeRow {
  limit_value: number | null;
  spent: number;
  reserved: number;
  period_ms: number | null;
  window_start: number;
  updated_at: number;
}

/**
 * The token ledger and the cost ledger (one instance per kind). On PostgreSQL reserve and settle are one
 * call each to a PL/pgSQL function (one round trip; migration 1767398400000) with the same logic as
 * below. On SQLite (in-process) they run synchronously on the raw connection, one BEGIN IMMEDIATE
 * transaction of prepared statements per call (TypeormStore.sqliteTransaction). Every check-and-update
 * is one SQL statement inside one transaction, so the invariant holds across any number of connections:
 * - reserve: insert the reservation row (a duplicate id means "already outstanding": answer ok), then one
 *   guarded UPDATE per scope in sorted order (a fixed lock order, so two reservations on the same scopes
 *   cannot deadlock), creating missing scopes on the way; a scope whose guarded UPDATE matches no row
 *   refuses and everything is rolled back.
 * - commit / release / reap: DELETE … RETURNING the reservation row first; only the transaction that got
 *   the row back updates the scopes, which makes settling exactly-once under concurrency.
 * Window rollover (ledger.ts `rolledOver`) is the same arithmetic in SQL, applied in the same statement.
 */
export class TypeormLedger extends Ledger {
  private readonly scopesTable: string;
  private readonly reservationsTable: string;
  private readonly sql: ReturnType<typeof ledgerSql>;

  constructor(
    private readonly store: TypeormStore,
    private readonly kind: LedgerKind,
  ) {
    super();
    this.scopesTable = store.table('ledger_scopes');
    this.reservationsTable = store.table('ledger_reservations');
    this.sql = ledgerSql(this.scopesTable, this.reservationsTable);
  }

  async reserve(reservationId: string, scopes: string[], amount: number, now = Date.now()): Promise<ReserveResult> {
    const distinct = [...new Set(scopes)];
    if (this.store.dialect === 'postgres') return this.reserveOnPostgres(reservationId, distinct, amount, now);
    try {
      await this.store.sqliteTransaction((s) => this.reserveIn(s, reservationId, distinct, amount, now));
      return { ok: true };
    } catch (error) {
      if (error instanceof Refused) return error.result;
      throw error;
    }
  }

  /**
   * SQLite: this ledger's part of a reserve inside the caller's transaction (also used by
   * SqliteAccountingLedger to reserve both ledgers in one). Throws Refused, which rolls it back.
   */
  reserveIn(s: SyncSession, reservationId: string, scopes: string[], amount: number, now: number): void {
    const reservation = { id: reservationId, scopes, amount, createdAt: now };
    if (s.run(this.sql.insertReservation, reservationValues(this.kind, reservation)) === 0) return;
    const taken: string[] = [];
    for (const scope of [...scopes].sort()) {
      const reserveOn = () => s.run(this.sql.reserve, [this.kind, scope, amount, now]) > 0;
      // Scopes usually exist: try first, create only when nothing matched, then try once more (it
      // exists and refuses).
      if (!reserveOn()) {
        s.run(this.sql.createScope, [this.kind, scope, now]);
        if (!reserveOn()) throw new Refused(this.kind, this.refusalIn(s, scopes, amount, now, scope, taken));
      }
      taken.push(scope);
    }
  }

  /** SQLite: commit (`actual`) or release (null) inside the caller's transaction; false when unknown. */
  settleIn(s: SyncSession, reservationId: string, actual: number | null, now: number): boolean {
    const row = s.get<SettledRow>(this.sql.takeReservation, [this.kind, reservationId]);
    if (!row) return false;
    const { scopes, amount } = settledAmount(row);
    for (const scope of [...scopes].sort()) {
      if (actual === null) s.run(this.sql.unreserve, [this.kind, scope, amount, now]);
      else s.run(this.sql.commit, [this.kind, scope, amount, actual, now]);
    }
    return true;
  }

  /**
   * What a refused reserve reports: the first scope in the caller's order that cannot take `amount`,
   * read inside the transaction before it rolls back (minus what this reserve already took), else the
   * scope whose guarded update refused.
   */
  private refusalIn(s: SyncSession, scopes: string[], amount: number, now: number, refused: string, taken: string[]): Refusal {
    const read = (scope: string): LedgerScope | null => {
      const row = s.get<ScopeRow>(this.sql.selectScope, [this.kind, scope]);
      if (!row) return null;
      const current = rolledOver(
        { scope, limit: row.limit_value, spent: row.spent, reserved: row.reserved, periodMs: row.period_ms, windowStart: row.window_start, updatedAt: row.updated_at },
        now,
      );
      return { ...current, reserved: current.reserved - (taken.includes(scope) ? amount : 0) };
    };
    const refuses = (row: LedgerScope | null): row is LedgerScope & { limit: number } =>
      row !== null && row.limit !== null && row.spent + row.reserved + amount > row.limit;
    const row = scopes.map(read).find(refuses) ?? read(refused);
    return { ok: false, scope: row?.scope ?? refused, limit: row?.limit ?? 0, spent: row?.spent ?? 0, reserved: row?.reserved ?? 0 };
  }

  async commit(reservationId: string, actual: number, now = Date.now()): Promise<boolean> {
    if (this.store.dialect === 'postgres') return this.settleOnPostgres(reservationId, actual, now);
    return this.store.sqliteTransaction((s) => this.settleIn(s, reservationId, actual, now));
  }

  async release(reservationId: string, now = Date.now()): Promise<boolean> {
    if (this.store.dialect === 'postgres') return this.settleOnPostgres(reservationId, null, now);
    return this.store.sqliteTransaction((s) => this.settleIn(s, reservationId, null, now));
  }

  async listReservations(createdBefore: number): Promise<Reservation[]> {
    const rows = await this.store.session((s) =>
      s.manager.find(LedgerReservationEntity, {
        where: { kind: this.kind, createdAt: LessThan(createdBefore) },
        order: { createdAt: 'ASC', id: 'ASC' },
      }),
    );
    return rows.map(toReservation);
  }

  async reap(createdBefore: number): Promise<number> {
    return this.store.transaction(async (s) => {
      const rows = await s.rows<SettledRow>(
        `DELETE FROM ${this.reservationsTable} WHERE kind = $1 AND created_at < $2 RETURNING scopes, amount`,
        [this.kind, createdBefore],
      );
      await this.unreserve(s, rows, Date.now());
      return rows.length;
    });
  }

  async setLimit(scope: string, limit: number | null, periodMs: number | null, now = Date.now()): Promise<LedgerScope> {
    return this.store.transaction(async (s) => {
      await this.createScope(s, scope, now);
      const current = rolledOver((await this.lockScope(s, scope))!, now);
      const windowStart =
        periodMs === current.periodMs ? current.windowStart : periodMs === null ? 0 : windowStartFor(periodMs, now);
      const next: LedgerScope = { ...current, limit, periodMs, windowStart, updatedAt: now };
      await this.writeScope(s, next);
      return next;
    });
  }

  async resetSpent(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    return this.store.transaction(async (s) => {
      const current = await this.lockScope(s, scope);
      if (current === null) return null;
      const next: LedgerScope = { ...rolledOver(current, now), spent: 0, updatedAt: now };
      await this.writeScope(s, next);
      return next;
    });
  }

  async get(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    const row = await this.store.session((s) => s.manager.findOneBy(LedgerScopeEntity, { kind: this.kind, scope }));
    return row ? rolledOver(toLedgerScope(row), now) : null;
  }

  async list(prefix: string | null, limit: number, cursor: string | null, now = Date.now()): Promise<Page<LedgerScope>> {
    const size = Math.max(1, limit);
    const after = cursor === null ? null : decodeCursor(cursor, isString);
    if (cursor !== null && after === null) throw new GatewayError(ErrorCode.InvalidRequest, 'invalid cursor', 'cursor');
    const rows = await this.store.session((s) => {
      const query = s.manager
        .createQueryBuilder(LedgerScopeEntity, 'l')
        .where('l.kind = :kind', { kind: this.kind })
        .orderBy('l.scope', 'ASC')
        .limit(size + 1);
      if (prefix) {
        query.andWhere('l.scope >= :prefix', { prefix });
        const bound = prefixUpperBound(prefix);
        if (bound !== null) query.andWhere('l.scope < :bound', { bound });
      }
      if (after !== null) query.andWhere('l.scope > :after', { after });
      return query.getMany();
    });
    const items = rows.slice(0, size).map((row) => rolledOver(toLedgerScope(row), now));
    return { items, nextCursor: rows.length > size ? encodeCursor(items[items.length - 1].scope) : null };
  }

  async putScope(scope: LedgerScope): Promise<void> {
    await this.store.session((s) =>
      s.run(
        `INSERT INTO ${this.scopesTable} (kind, scope, limit_value, spent, reserved, period_ms, window_start, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (kind, scope) DO UPDATE SET limit_value = excluded.limit_value, spent = excluded.spent,
           reserved = excluded.reserved, period_ms = excluded.period_ms, window_start = excluded.window_start,
           updated_at = excluded.updated_at`,
        [this.kind, scope.scope, scope.limit, scope.spent, scope.reserved, scope.periodMs, scope.windowStart, scope.updatedAt],
      ),
    );
  }

  async putReservation(reservation: Reservation): Promise<void> {
    await this.store.session((s) => this.insertReservation(s, reservation));
  }

  /** One round trip: the ditto_ledger_reserve function (migration 1767398400000) does all of it. */
  private async reserveOnPostgres(id: string, scopes: string[], amount: number, now: number): Promise<ReserveResult> {
    const [refused] = await this.store.session((s) =>
      s.rows<{ refused_scope: string; refused_limit: string; refused_spent: string; refused_reserved: string }>(
        `SELECT * FROM ${this.store.table('ditto_ledger_reserve')}($1, $2, $3::text[], $4, $5)`,
        [this.kind, id, scopes, amount, now],
      ),
    );
    if (!refused) return { ok: true };
    return {
      ok: false,
      scope: refused.refused_scope,
      limit: Number(refused.refused_limit),
      spent: Number(refused.refused_spent),
      reserved: Number(refused.refused_reserved),
    };
  }

  /** One round trip: commit (`actual`) or release (null) through the ditto_ledger_settle function. */
  private async settleOnPostgres(id: string, actual: number | null, now: number): Promise<boolean> {
    const [row] = await this.store.session((s) =>
      s.rows<{ settled: boolean }>(`SELECT ${this.store.table('ditto_ledger_settle')}($1, $2, $3, $4) AS settled`, [this.kind, id, actual, now]),
    );
    return row?.settled === true;
  }

  /** False when a reservation with this id is already outstanding. */
  private async insertReservation(s: SqlSession, reservation: Reservation): Promise<boolean> {
    return (await s.run(this.sql.insertReservation, reservationValues(this.kind, reservation))) > 0;
  }

  /** Creates the scope as unlimited unless it exists. */
  private async createScope(s: SqlSession, scope: string, now: number): Promise<void> {
    await s.run(this.sql.createScope, [this.kind, scope, now]);
  }

  private async lockScope(s: SqlSession, scope: string): Promise<LedgerScope | null> {
    const query = s.manager
      .createQueryBuilder(LedgerScopeEntity, 'l')
      .where('l.kind = :kind AND l.scope = :scope', { kind: this.kind, scope });
    const row = await this.store.lockForUpdate(query).getOne();
    return row ? toLedgerScope(row) : null;
  }

  /** Writes what setLimit/resetSpent computed under the row lock; `reserved` is left to the guarded updates. */
  private async writeScope(s: SqlSession, scope: LedgerScope): Promise<void> {
    await s.run(
      `UPDATE ${this.scopesTable} SET limit_value = $3, spent = $4, period_ms = $5, window_start = $6, updated_at = $7
       WHERE kind = $1 AND scope = $2`,
      [this.kind, scope.scope, scope.limit, scope.spent, scope.periodMs, scope.windowStart, scope.updatedAt],
    );
  }

  /** Returns settled reservations' amounts to their scopes (summed per scope, in lock order). Spend is
   * untouched, so no window arithmetic is needed. */
  private async unreserve(s: SqlSession, rows: SettledRow[], now: number): Promise<void> {
    const perScope = new Map<string, number>();
    for (const { scopes, amount } of rows.map(settledAmount)) {
      for (const scope of scopes) perScope.set(scope, (perScope.get(scope) ?? 0) + amount);
    }
    for (const scope of [...perScope.keys()].sort()) {
      await s.run(this.sql.unreserve, [this.kind, scope, perScope.get(scope), now]);
    }
  }
}

/** ledger.ts `rolledOver` in SQL: the row's window has ended at `now`. In an UPDATE every expression
 * sees the row as it was, so all SET clauses agree on whether it rolled over. */
const rolled = (now: string) => `(period_ms IS NOT NULL AND ${now} >= window_start + period_ms)`;

/** The ledger's statements on SQLite (reserve/commit/release run them synchronously) and, for the
 * operations that are not PL/pgSQL functions, on PostgreSQL. `$n` parameters. */
const ledgerSql = (scopes: string, reservations: string) => ({
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

/** SQLite: both ledgers reserved, and settled, in ONE transaction (one queue hop, one commit). */
export class SqliteAccountingLedger extends AccountingLedger {
  constructor(
    private readonly store: TypeormStore,
    private readonly tokens: TypeormLedger,
    private readonly costs: TypeormLedger,
  ) {
    super();
  }

  async reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now = Date.now()): Promise<AccountingReserveResult> {
    const distinct = [...new Set(scopes)];
    try {
      await this.store.sqliteTransaction((s) => {
        this.tokens.reserveIn(s, reservationId, distinct, amounts.tokens, now);
        this.costs.reserveIn(s, reservationId, distinct, amounts.usdMicros, now);
      });
      return { ok: true };
    } catch (error) {
      if (error instanceof Refused) return { ...error.result, ledger: error.kind };
      throw error;
    }
  }

  settle(reservationId: string, actual: LedgerAmounts | null, now = Date.now()): Promise<AccountingSettled> {
    return this.store.sqliteTransaction((s) => ({
      tokens: this.tokens.settleIn(s, reservationId, actual?.tokens ?? null, now),
      usdMicros: this.costs.settleIn(s, reservationId, actual?.usdMicros ?? null, now),
    }));
  }
}
