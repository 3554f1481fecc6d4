import { DataSource, EntityManager, QueryFailedError, QueryRunner, SelectQueryBuilder } from 'typeorm';
import { compileParams, SqliteDatabase, SqliteWrite } from './sqlite-group-commit';
import type { SqliteWriter } from './sqlite-writer';

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
function positional(sql: string, params: readonly unknown[]): [string, unknown[]] {
  const { text, order } = compileParams(sql);
  return [text, order.map((i) => params[i])];
}

/** The driver's error code (PostgreSQL: the SQLSTATE; SQLite: `SQLITE_…`) of a failed query, or ''. */
export function driverErrorCode(error: unknown): string {
  const cause: unknown = error instanceof QueryFailedError ? error.driverError : error;
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : '';
}

export function isUniqueViolation(error: unknown): boolean {
  const code = driverErrorCode(error);
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
  /** SQLite: where the hot-path writes go (set once the schema is migrated). */
  private writer: SqliteWriter | null = null;

  constructor(
    readonly dataSource: DataSource,
    readonly dialect: Dialect,
    /** PostgreSQL: the schema of every table; null on SQLite. */
    readonly schema: string | null,
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

  /** SQLite: routes the hot-path writes (ledger reserve/settle, audit appends) through `writer` from now on. */
  useWriter(writer: SqliteWriter): void {
    this.writer = writer;
  }

  /** SQLite: one hot-path write, committed with the others of its event-loop turn (SqliteWriter). */
  sqliteWrite(write: SqliteWrite): Promise<unknown> {
    if (this.writer === null) throw new Error('sqliteWrite is for SQLite only');
    return this.writer.submit(write);
  }

  /** SQLite: runs `work` on the main connection's raw better-sqlite3 handle, queued with every other access. */
  rawSqlite<T>(work: (db: SqliteDatabase) => T): Promise<T> {
    if (this.serial === null) throw new Error('rawSqlite is for SQLite only');
    return this.serial.run(async () => work((this.dataSource.driver as unknown as { databaseConnection: SqliteDatabase }).databaseConnection));
  }

  async ping(): Promise<void> {
    await this.session((s) => s.rows('SELECT 1 AS ok'));
  }

  /** Destroys the DataSource once the writer has committed what it holds and queued work has finished. */
  async close(): Promise<void> {
    await this.writer?.close();
    const destroy = async () => {
      if (this.dataSource.isInitialized) await this.dataSource.destroy();
    };
    if (!this.serial) return destroy();
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
