import { DataSource, EntityManager, QueryFailedError, QueryRunner, SelectQueryBuilder } from 'typeorm';

export type Dialect = 'sqlite' | 'postgres';

/**
 * What a repository works with inside `session` / `transaction`: TypeORM's manager for entity reads
 * and simple writes, plus raw statements (written with `$1…` placeholders for both dialects) for the
 * guarded updates, upserts and bulk inserts that the entity API cannot express atomically.
 */
export interface SqlSession {
  readonly manager: EntityManager;
  /** Rows of a SELECT or of a statement with RETURNING. */
  rows<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Number of rows changed by a statement without RETURNING. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
}

/** Runs tasks one after another (a promise-queue mutex). */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/*
 * better-sqlite3 is synchronous: while it waits for another connection's write lock (busy_timeout) it
 * blocks the whole event loop. Two DataSources of one process on one file would therefore deadlock for
 * the full timeout whenever one of them holds a transaction open across an await. Sharing one queue per
 * file inside the process rules that out; other processes are handled by busy_timeout.
 */
const fileQueues = new Map<string, { queue: SerialQueue; users: number }>();

export function acquireFileQueue(file: string): { queue: SerialQueue; release(): void } {
  const entry = fileQueues.get(file) ?? { queue: new SerialQueue(), users: 0 };
  entry.users++;
  fileQueues.set(file, entry);
  let released = false;
  return {
    queue: entry.queue,
    release: () => {
      if (released) return;
      released = true;
      if (--entry.users === 0 && fileQueues.get(file) === entry) fileQueues.delete(file);
    },
  };
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** better-sqlite3 binds `?` positionally and cannot reuse `?NNN`: expand `$n` in order of appearance. */
/** The part of better-sqlite3's API that sqliteTransaction uses. */
interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

interface SqliteDatabase {
  readonly inTransaction: boolean;
  prepare(sql: string): SqliteStatement;
}

/** Synchronous statements inside sqliteTransaction; SQL uses `$1`-style parameters like SqlSession. */
export interface SyncSession {
  /** Rows changed. */
  run(sql: string, params?: readonly unknown[]): number;
  get<T>(sql: string, params?: readonly unknown[]): T | undefined;
  all<T>(sql: string, params?: readonly unknown[]): T[];
}

/** `$n` parameters → SQLite's `?` and, per `?`, which parameter it takes (so `$1` may appear twice). */
function compileParams(sql: string): { text: string; order: number[] } {
  const order: number[] = [];
  const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
    order.push(Number(n) - 1);
    return '?';
  });
  return { text, order };
}

function positional(sql: string, params: readonly unknown[]): [string, unknown[]] {
  const { text, order } = compileParams(sql);
  return [text, order.map((i) => params[i])];
}

export function isUniqueViolation(error: unknown): boolean {
  const cause: unknown = error instanceof QueryFailedError ? error.driverError : error;
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/**
 * The smallest string greater than every string that starts with `prefix`, in code point order (SQLite's
 * BINARY collation, and PostgreSQL's "C" collation used for the columns filtered this way), so a prefix
 * match is the index-friendly range `prefix <= v < bound`. Null when no bound exists.
 */
export function prefixUpperBound(prefix: string): string | null {
  const points = [...prefix];
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) return points.join('') + String.fromCodePoint(last + 1 === 0xd800 ? 0xe000 : last + 1);
  }
  return null;
}

/**
 * One DataSource plus the rules for using it safely: on SQLite every access goes through `serial` and
 * write transactions start with BEGIN IMMEDIATE (the write lock is taken up front, so two connections
 * never deadlock upgrading a read lock); on PostgreSQL each call borrows a pooled connection.
 */
export class TypeormStore {
  /** Prepared statements of sqliteTransaction, by SQL text (one connection per store). */
  private readonly statements = new Map<string, { prepared: SqliteStatement; order: number[] }>();
  /** sqliteTransaction calls waiting for the next group commit. */
  private batch: Array<{ work: (session: SyncSession) => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }> = [];

  constructor(
    readonly dataSource: DataSource,
    readonly dialect: Dialect,
    private readonly schema: string | null,
    private readonly serial: SerialQueue | null,
  ) {}

  /** Quoted, schema-qualified table name for raw SQL. */
  table(name: string): string {
    return this.schema === null ? quoteIdentifier(name) : `${quoteIdentifier(this.schema)}.${quoteIdentifier(name)}`;
  }

  /** Row lock for a read-then-write inside `transaction` (SQLite already holds the database write lock). */
  lockForUpdate<T extends object>(query: SelectQueryBuilder<T>): SelectQueryBuilder<T> {
    return this.dialect === 'postgres' ? query.setLock('pessimistic_write') : query;
  }

  /** Runs `work` without a transaction (each statement commits on its own). */
  session<T>(work: (session: SqlSession) => Promise<T>): Promise<T> {
    if (this.serial) return this.serial.run(() => work(this.wrap(this.dataSource.createQueryRunner())));
    return this.withRunner((runner) => work(this.wrap(runner)));
  }

  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (session: SqlSession) => Promise<T>): Promise<T> {
    if (this.serial) {
      return this.serial.run(async () => {
        const runner = this.dataSource.createQueryRunner();
        await runner.query('BEGIN IMMEDIATE');
        try {
          const result = await work(this.wrap(runner));
          await runner.query('COMMIT');
          return result;
        } catch (error) {
          // SQLite may already have rolled back on its own (e.g. SQLITE_FULL): nothing left to undo then.
          await runner.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      });
    }
    return this.withRunner(async (runner) => {
      await runner.startTransaction();
      try {
        const result = await work(this.wrap(runner));
        await runner.commitTransaction();
        return result;
      } catch (error) {
        if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
        throw error;
      }
    });
  }

  /**
   * SQLite only: runs `work` synchronously on the raw better-sqlite3 connection inside BEGIN IMMEDIATE …
   * COMMIT, queued with every other access to the file. The hot ledger operations use it: prepared
   * statements instead of an async TypeORM call per statement.
   *
   * Group commit: every `work` submitted during one event-loop turn (under load, the reserves and
   * settles of many requests) runs in ONE transaction, each inside its own savepoint. A `work` that
   * throws is rolled back to its savepoint alone and rejects; the others are kept. Nothing resolves
   * before the COMMIT has succeeded, and if the COMMIT fails every `work` of the batch rejects. A
   * transaction's fixed cost (the lock, the WAL frames written at COMMIT) is paid once per batch
   * instead of once per call, which was most of a governed request's cost on SQLite (docs/benchmarks.md).
   */
  sqliteTransaction<T>(work: (session: SyncSession) => T): Promise<T> {
    if (this.serial === null) throw new Error('sqliteTransaction is for SQLite only');
    return new Promise<T>((resolve, reject) => {
      this.batch.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.batch.length === 1) setImmediate(() => void this.serial!.run(() => this.runBatch()));
    });
  }

  private async runBatch(): Promise<void> {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    let db: SqliteDatabase | null = null;
    try {
      db = (this.dataSource.driver as unknown as { databaseConnection: SqliteDatabase }).databaseConnection;
      const session = this.syncSession(db);
      session.run('BEGIN IMMEDIATE');
      for (const { work } of batch) outcomes.push(batch.length === 1 ? this.runAlone(session, work) : this.runInSavepoint(session, work));
      session.run('COMMIT');
    } catch (error) {
      try {
        if (db?.inTransaction) db.prepare('ROLLBACK').run();
      } catch {
        // The connection is gone (closed store): nothing left to undo.
      }
      for (const { reject } of batch) reject(error);
      return;
    }
    batch.forEach(({ resolve, reject }, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) resolve(outcome.value);
      else reject(outcome.error);
    });
  }

  /** A batch of one: a throw rolls back the whole transaction (nothing else is in it). */
  private runAlone(session: SyncSession, work: (session: SyncSession) => unknown): { ok: true; value: unknown } {
    return { ok: true, value: work(session) };
  }

  private runInSavepoint(session: SyncSession, work: (session: SyncSession) => unknown): { ok: true; value: unknown } | { ok: false; error: unknown } {
    session.run('SAVEPOINT ditto_work');
    try {
      const value = work(session);
      session.run('RELEASE ditto_work');
      return { ok: true, value };
    } catch (error) {
      session.run('ROLLBACK TO ditto_work');
      session.run('RELEASE ditto_work');
      return { ok: false, error };
    }
  }

  async ping(): Promise<void> {
    await this.session((s) => s.rows('SELECT 1 AS ok'));
  }

  /** Destroys the DataSource once queued work (a group commit still waiting for its turn included) has finished. */
  async close(): Promise<void> {
    const destroy = async () => {
      if (this.dataSource.isInitialized) await this.dataSource.destroy();
    };
    if (!this.serial) return destroy();
    if (this.batch.length > 0) void this.serial.run(() => this.runBatch());
    await this.serial.run(destroy);
  }

  private async withRunner<T>(work: (runner: QueryRunner) => Promise<T>): Promise<T> {
    const runner = this.dataSource.createQueryRunner();
    try {
      return await work(runner);
    } finally {
      await runner.release();
    }
  }

  private syncSession(db: SqliteDatabase): SyncSession {
    const bind = (sql: string, params: readonly unknown[]) => {
      let entry = this.statements.get(sql);
      if (entry === undefined) {
        const { text, order } = compileParams(sql);
        entry = { prepared: db.prepare(text), order };
        this.statements.set(sql, entry);
      }
      return { prepared: entry.prepared, values: entry.order.map((i) => params[i]) };
    };
    return {
      run: (sql, params = []) => {
        const { prepared, values } = bind(sql, params);
        return prepared.run(...values).changes;
      },
      get: <T>(sql: string, params: readonly unknown[] = []) => {
        const { prepared, values } = bind(sql, params);
        return prepared.get(...values) as T | undefined;
      },
      all: <T>(sql: string, params: readonly unknown[] = []) => {
        const { prepared, values } = bind(sql, params);
        return prepared.all(...values) as T[];
      },
    };
  }

  private wrap(runner: QueryRunner): SqlSession {
    const execute = (sql: string, params: readonly unknown[]) => {
      const [text, values] = this.dialect === 'sqlite' ? positional(sql, params) : [sql, [...params]];
      return runner.query(text, values, true);
    };
    return {
      manager: runner.manager,
      rows: async <T>(sql: string, params: readonly unknown[] = []) => (await execute(sql, params)).records as T[],
      run: async (sql: string, params: readonly unknown[] = []) => (await execute(sql, params)).affected ?? 0,
    };
  }
}
