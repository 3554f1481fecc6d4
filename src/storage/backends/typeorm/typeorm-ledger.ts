import { LessThan } from 'typeorm';
import { AccountingLedger, AccountingReserveResult, AccountingSettled, BatchReply, LedgerAmounts, reserveReply, settleReply } from '../../ports/accounting-ledger';
import { BatchingRules, OperationBatcher } from '../../operation-batcher';
import { Ledger, LedgerScope, Reservation, ReserveResult, rolledOver, windowStartFor } from '../../ports/ledger';
import { Page, encodeCursor } from '../../../common/page';
import { LedgerReservationEntity } from './entities/ledger-reservation.entity';
import { LedgerScopeEntity } from './entities/ledger-scope.entity';
import { ledgerSql } from './ledger-sql';
import { SettledRow, reservationValues, settledAmount, toLedgerScope, toReservation } from './mappers/ledger.mapper';
import { LedgerKind, SqliteReserveResult } from './sqlite-group-commit';
import { SqlSession, TypeormStore, driverErrorCode, prefixUpperBound } from './typeorm-store';
import { readCursor } from '../../../common/errors/storage-errors';

const isString = (v: unknown): v is string => typeof v === 'string';

/**
 * The token ledger and the cost ledger (one instance per kind). On PostgreSQL reserve and settle are one
 * call each to a PL/pgSQL function (one round trip; migration 1767398400000) with the same logic as
 * below. On SQLite they are writes of the store's SqliteWriter (group commits of prepared statements,
 * off the event loop; sqlite-group-commit.ts has the logic). Every check-and-update is one SQL statement
 * inside one transaction, so the invariant holds across any number of connections:
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
    const result = (await this.store.sqliteWrite({
      type: 'reserve',
      id: reservationId,
      scopes: distinct,
      now,
      ledgers: [{ kind: this.kind, amount }],
    })) as SqliteReserveResult;
    if (result.ok) return result;
    const { ledger: _ledger, ...refusal } = result;
    return refusal;
  }

  async commit(reservationId: string, actual: number, now = Date.now()): Promise<boolean> {
    if (this.store.dialect === 'postgres') return this.settleOnPostgres(reservationId, actual, now);
    return this.settleOnSqlite(reservationId, actual, now);
  }

  async release(reservationId: string, now = Date.now()): Promise<boolean> {
    if (this.store.dialect === 'postgres') return this.settleOnPostgres(reservationId, null, now);
    return this.settleOnSqlite(reservationId, null, now);
  }

  private async settleOnSqlite(reservationId: string, actual: number | null, now: number): Promise<boolean> {
    const [settled] = (await this.store.sqliteWrite({ type: 'settle', id: reservationId, now, ledgers: [{ kind: this.kind, actual }] })) as boolean[];
    return settled;
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
    const after = readCursor(cursor, isString);
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

/** SQLite: both ledgers reserved, and settled, in ONE write each (one group commit, one transaction). */
export class SqliteAccountingLedger extends AccountingLedger {
  constructor(private readonly store: TypeormStore) {
    super();
  }

  async reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now = Date.now()): Promise<AccountingReserveResult> {
    return (await this.store.sqliteWrite({
      type: 'reserve',
      id: reservationId,
      scopes: [...new Set(scopes)],
      now,
      ledgers: [
        { kind: 'tokens', amount: amounts.tokens },
        { kind: 'usd_micros', amount: amounts.usdMicros },
      ],
    })) as SqliteReserveResult;
  }

  async settle(reservationId: string, actual: LedgerAmounts | null, now = Date.now()): Promise<AccountingSettled> {
    const [tokens, usdMicros] = (await this.store.sqliteWrite({
      type: 'settle',
      id: reservationId,
      now,
      ledgers: [
        { kind: 'tokens', actual: actual?.tokens ?? null },
        { kind: 'usd_micros', actual: actual?.usdMicros ?? null },
      ],
    })) as boolean[];
    return { tokens, usdMicros };
  }
}

/**
 * When a batch goes out (OperationBatcher): ONE call in flight at a time. A hot scope (one key, one
 * tenant) serialises every transaction that touches it for the length of its commit, WAL flush
 * included; while one batch commits, the next collects everything that arrives, so the batch grows with
 * the load and a hot row costs one commit per batch, not two per request and ledger. Reserves go out at
 * the end of the event-loop turn, settles wait up to 5 ms to ride along.
 */
const BATCHING: BatchingRules = { maxOps: 512, urgentFlushAt: Infinity, lingerMs: 5, maxInFlight: 1 };

/** SQLSTATEs after which the whole batch is tried again (nothing of it was applied): a deadlock, a
 * serialization failure, a reservation id inserted meanwhile by another transaction. */
const RETRYABLE = new Set(['40P01', '40001', '23505']);
const MAX_ATTEMPTS = 3;

/** A reserve `["r", id, now, tokens, usd, scopes]` or a settle `["s", id, now, tokens, usd]` (null = release). */
type PostgresOperation = [string, string, number, number | null, number | null, string[]?];

/**
 * PostgreSQL: both ledgers reserved, and settled, through `ditto_accounting_batch` (migration
 * 1767830400000): the calls that arrive while the previous batch commits go out as one function call,
 * one transaction, applied in submission order, each caller answered from its own reply.
 * - A batch that deadlocks with a concurrent transaction (the reaper's deletes, a scope created at the
 *   same moment) or meets a reservation id inserted meanwhile is rolled back whole and tried again, up
 *   to three times.
 * - A batch that fails on its data (SQLSTATE class 22 or 23: a value out of range…) is rolled back
 *   whole and each of its operations tried alone, so one bad operation fails alone.
 * - Anything else (the connection lost, the server shutting down) fails every caller of the batch,
 *   with nothing of it applied.
 */
export class PostgresAccountingLedger extends AccountingLedger {
  private readonly batches = new OperationBatcher<PostgresOperation>((ops) => this.send(ops), BATCHING);
  private readonly call: string;

  constructor(private readonly store: TypeormStore) {
    super();
    this.call = `SELECT ${store.table('ditto_accounting_batch')}($1::jsonb, $2::text[], $3::text[]) AS replies`;
  }

  async reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now = Date.now()): Promise<AccountingReserveResult> {
    const unique = [...new Set(scopes)];
    const reply = await this.batches.submit(['r', reservationId, now, amounts.tokens, amounts.usdMicros, unique], true);
    return reserveReply(reply as BatchReply, unique);
  }

  async settle(reservationId: string, actual: LedgerAmounts | null, now = Date.now()): Promise<AccountingSettled> {
    const reply = await this.batches.submit(['s', reservationId, now, actual?.tokens ?? null, actual?.usdMicros ?? null], false);
    return settleReply(reply as BatchReply);
  }

  /** Resolves once every call submitted so far is answered (the store closes after it). */
  drain(): Promise<void> {
    return this.batches.drain();
  }

  private async send(operations: PostgresOperation[]): Promise<unknown[]> {
    const ids = [...new Set(operations.map((op) => op[1]))];
    const scopes = [...new Set(operations.flatMap((op) => op[5] ?? []))];
    const params = [JSON.stringify(operations), ids, scopes];
    for (let attempt = 1; ; attempt++) {
      try {
        const [row] = await this.store.session((s) => s.rows<{ replies: unknown[] }>(this.call, params));
        return row.replies;
      } catch (error) {
        const code = driverErrorCode(error);
        if (RETRYABLE.has(code) && attempt < MAX_ATTEMPTS) continue;
        if (operations.length > 1 && (code.startsWith('22') || code.startsWith('23'))) {
          return Promise.all(operations.map((op) => this.send([op]).then(([reply]) => reply, (e: unknown) => asError(e))));
        }
        throw error;
      }
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
