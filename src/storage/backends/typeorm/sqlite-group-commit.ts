/*
 * The SQLite hot path (ledger reserve/settle, audit appends) as plain data and one synchronous
 * executor. It runs either in a worker thread on its own connection (sqlite-writer.worker.ts) or, for
 * an in-memory database, on the main connection; it imports nothing that needs TypeORM, so the worker
 * stays small.
 */
import { LedgerScope, rolledOver } from '../../ports/ledger';
import { ledgerSql } from './ledger-sql';

/** Rows of the two ledgers share the tables, told apart by this column. */
export type LedgerKind = 'tokens' | 'usd_micros';

/** One unit of work of a group commit: atomic on its own, whatever else is in its batch. */
export type SqliteWrite =
  /** Reserves `amount` on every scope in each ledger, all or none (a ledger already holding the id is left alone). */
  | { type: 'reserve'; id: string; scopes: string[]; now: number; ledgers: Array<{ kind: LedgerKind; amount: number }> }
  /** Commits (`actual`) or releases (null) the reservation in each ledger: one flag per ledger, false when unknown. */
  | { type: 'settle'; id: string; now: number; ledgers: Array<{ kind: LedgerKind; actual: number | null }> }
  /** Inserts audit rows (values in the audit table's column order); a row whose id exists is skipped. */
  | { type: 'audit'; rows: unknown[][] }
  /** Deletes at most `max` audit rows with ts < `cutoff`, oldest first; the value is how many. */
  | { type: 'audit-prune'; cutoff: number; max: number }
  /** Gives up to `pages` free pages back to the file system (incremental vacuum); the value is
   * `{ freed, left }`: pages given back, and free pages left. */
  | { type: 'vacuum'; pages: number }
  /** `/ready`'s write probe: writes a reservation row and deletes it again, so its batch's COMMIT writes to the file. */
  | { type: 'probe'; now: number };

/** The reservation id the write probe writes and deletes (never a request's: those are UUIDs). */
const PROBE_ID = 'ditto:write-probe';

/** A refused reserve: the ledger and the first scope (in the caller's order) that cannot take the amount. */
export interface SqliteRefusal {
  ok: false;
  ledger: LedgerKind;
  scope: string;
  limit: number;
  spent: number;
  reserved: number;
}

export type SqliteReserveResult = { ok: true } | SqliteRefusal;

/** What a write came to (a value per its type), or the error that rolled it back, as data (it may cross threads). */
export type SqliteOutcome = { ok: true; value: unknown } | { ok: false; error: { message: string; code?: string } };

/** Table names (quoted) and the audit table's columns. */
export interface SqliteTables {
  scopes: string;
  reservations: string;
  audit: string;
  auditColumns: readonly string[];
}

/** The part of better-sqlite3's API used here. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
}

export interface SqliteDatabase {
  readonly inTransaction: boolean;
  prepare(sql: string): SqliteStatement;
  exec(sql: string): unknown;
}

/** The error a write failed with, rebuilt on the caller's side. */
export function outcomeError(failure: { message: string; code?: string }): Error {
  return Object.assign(new Error(failure.message), failure.code ? { code: failure.code } : {});
}

/** Thrown inside a reserve to roll it back; becomes its (successful) refusal outcome. */
class Refused extends Error {
  constructor(readonly result: SqliteRefusal) {
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

/** `$n` parameters → SQLite's `?` and, per `?`, which parameter it takes (so `$1` may appear twice). */
export function compileParams(sql: string): { text: string; order: number[] } {
  const order: number[] = [];
  const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
    order.push(Number(n) - 1);
    return '?';
  });
  return { text, order };
}

/**
 * Runs batches of writes as group commits on one connection: ONE `BEGIN IMMEDIATE … COMMIT` per batch,
 * each write inside its own savepoint, so a refused reserve or a failing write rolls back alone while
 * the others are kept. A transaction's fixed cost (the write lock, the WAL frames written at COMMIT) is
 * paid once per batch instead of once per call — under load, most of a governed request's storage cost
 * (docs/benchmarks.md). If BEGIN or COMMIT fails, every write of the batch fails with that error.
 *
 * The ledger logic: reserve inserts the reservation row (a duplicate id means "already outstanding":
 * answer ok), then one guarded UPDATE per scope in sorted order (a fixed lock order), creating missing
 * scopes on the way; a scope whose guarded UPDATE matches no row refuses and the write is rolled back.
 * Settle deletes the reservation row first (DELETE … RETURNING): only the write that gets the row back
 * updates the scopes, which makes settling exactly-once across connections and processes.
 */
export class SqliteGroupCommit {
  private readonly statements = new Map<string, { prepared: SqliteStatement; order: number[] }>();
  private readonly sql: ReturnType<typeof ledgerSql>;
  private readonly auditInsert: string;
  private readonly auditPrune: string;

  constructor(
    private readonly db: SqliteDatabase,
    tables: SqliteTables,
  ) {
    this.sql = ledgerSql(tables.scopes, tables.reservations);
    const placeholders = tables.auditColumns.map((_, i) => `$${i + 1}`).join(', ');
    this.auditInsert = `INSERT INTO ${tables.audit} (${tables.auditColumns.join(', ')}) VALUES (${placeholders}) ON CONFLICT (id) DO NOTHING`;
    // By rowid: the (ts, id) index yields the oldest rows' rowids, and each delete is a rowid lookup.
    this.auditPrune = `DELETE FROM ${tables.audit} WHERE rowid IN (SELECT rowid FROM ${tables.audit} WHERE ts < $1 ORDER BY ts LIMIT $2)`;
  }

  run(writes: readonly SqliteWrite[]): SqliteOutcome[] {
    const outcomes: SqliteOutcome[] = [];
    try {
      this.exec('BEGIN IMMEDIATE');
      if (writes.length === 1) {
        // A batch of one needs no savepoint: if it fails or refuses, nothing else is in the transaction.
        try {
          outcomes.push({ ok: true, value: this.apply(writes[0]) });
        } catch (error) {
          this.exec('ROLLBACK');
          return [failed(error)];
        }
      } else {
        for (const write of writes) outcomes.push(this.inSavepoint(write));
      }
      this.exec('COMMIT');
      return outcomes;
    } catch (error) {
      try {
        if (this.db.inTransaction) this.exec('ROLLBACK');
      } catch {
        // The connection is gone: nothing left to undo.
      }
      const failure = failed(error);
      return writes.map(() => failure);
    }
  }

  private inSavepoint(write: SqliteWrite): SqliteOutcome {
    this.exec('SAVEPOINT ditto_write');
    try {
      const value = this.apply(write);
      this.exec('RELEASE ditto_write');
      return { ok: true, value };
    } catch (error) {
      this.exec('ROLLBACK TO ditto_write');
      this.exec('RELEASE ditto_write');
      return failed(error);
    }
  }

  private apply(write: SqliteWrite): unknown {
    switch (write.type) {
      case 'reserve':
        for (const { kind, amount } of write.ledgers) this.reserve(kind, write.id, write.scopes, amount, write.now);
        return { ok: true } satisfies SqliteReserveResult;
      case 'settle':
        return write.ledgers.map(({ kind, actual }) => this.settle(kind, write.id, actual, write.now));
      case 'audit':
        for (const row of write.rows) this.exec(this.auditInsert, row);
        return write.rows.length;
      case 'audit-prune':
        return this.exec(this.auditPrune, [write.cutoff, write.max]);
      case 'vacuum': {
        const free = () => this.get<{ freelist_count: number }>('PRAGMA freelist_count', [])?.freelist_count ?? 0;
        const before = free();
        // exec, not a prepared run(): the pragma frees one page per step, exec steps it to the end.
        this.db.exec(`PRAGMA incremental_vacuum(${Math.max(1, Math.floor(write.pages))})`);
        const left = free();
        return { freed: before - left, left };
      }
      case 'probe':
        this.exec(this.sql.insertReservation, ['tokens', PROBE_ID, '[]', 0, write.now]);
        this.get(this.sql.takeReservation, ['tokens', PROBE_ID]);
        return true;
    }
  }

  private reserve(kind: LedgerKind, id: string, scopes: string[], amount: number, now: number): void {
    if (this.exec(this.sql.insertReservation, [kind, id, JSON.stringify(scopes), amount, now]) === 0) return;
    const taken: string[] = [];
    for (const scope of [...scopes].sort()) {
      const reserveOn = () => this.exec(this.sql.reserve, [kind, scope, amount, now]) > 0;
      // Scopes usually exist: try first, create only when nothing matched, then try once more (it
      // exists and refuses).
      if (!reserveOn()) {
        this.exec(this.sql.createScope, [kind, scope, now]);
        if (!reserveOn()) throw new Refused(this.refusal(kind, scopes, amount, now, scope, taken));
      }
      taken.push(scope);
    }
  }

  private settle(kind: LedgerKind, id: string, actual: number | null, now: number): boolean {
    const row = this.get<{ scopes: string; amount: number }>(this.sql.takeReservation, [kind, id]);
    if (!row) return false;
    const scopes = JSON.parse(row.scopes) as string[];
    for (const scope of [...scopes].sort()) {
      if (actual === null) this.exec(this.sql.unreserve, [kind, scope, row.amount, now]);
      else this.exec(this.sql.commit, [kind, scope, row.amount, actual, now]);
    }
    return true;
  }

  /**
   * What a refused reserve reports: the first scope in the caller's order that cannot take `amount`,
   * read before the write rolls back (minus what this reserve already took), else the scope whose
   * guarded update refused.
   */
  private refusal(kind: LedgerKind, scopes: string[], amount: number, now: number, refused: string, taken: string[]): SqliteRefusal {
    const read = (scope: string): LedgerScope | null => {
      const row = this.get<ScopeRow>(this.sql.selectScope, [kind, scope]);
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
    return { ok: false, ledger: kind, scope: row?.scope ?? refused, limit: row?.limit ?? 0, spent: row?.spent ?? 0, reserved: row?.reserved ?? 0 };
  }

  /** Runs a statement (`$n` parameters); rows changed. */
  private exec(sql: string, params: readonly unknown[] = []): number {
    const { prepared, values } = this.bind(sql, params);
    return prepared.run(...values).changes;
  }

  private get<T>(sql: string, params: readonly unknown[]): T | undefined {
    const { prepared, values } = this.bind(sql, params);
    return prepared.get(...values) as T | undefined;
  }

  private bind(sql: string, params: readonly unknown[]): { prepared: SqliteStatement; values: unknown[] } {
    let entry = this.statements.get(sql);
    if (entry === undefined) {
      const { text, order } = compileParams(sql);
      entry = { prepared: this.db.prepare(text), order };
      this.statements.set(sql, entry);
    }
    return { prepared: entry.prepared, values: entry.order.map((i) => params[i]) };
  }
}

function failed(error: unknown): SqliteOutcome {
  if (error instanceof Refused) return { ok: true, value: error.result };
  const { message, code } = error as { message?: unknown; code?: unknown };
  return { ok: false, error: { message: String(message ?? error), ...(typeof code === 'string' ? { code } : {}) } };
}
