import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { DataSource } from 'typeorm';
import { AuditLogRepository } from '../../ports/audit-log.repository';
import { BudgetLedger } from '../../ports/budget-ledger';
import { CostLedger } from '../../ports/cost-ledger';
import { ScopeRateLimitRepository } from '../../ports/scope-rate-limit.repository';
import { VirtualKeyRepository } from '../../ports/virtual-key.repository';
import { JobLock } from '../../ports/job-lock';
import { redactUrl, withoutPassword } from '../../redact';
import { StorageBackend, StorageOptions } from '../../ports/storage-backend';
import { AuditLogEntity } from './entities/audit-log.entity';
import { ChangeLogEntity } from './entities/change-log.entity';
import { LedgerReservationEntity } from './entities/ledger-reservation.entity';
import { LedgerScopeEntity } from './entities/ledger-scope.entity';
import { RateLimitEntity } from './entities/rate-limit.entity';
import { VirtualKeyEntity } from './entities/virtual-key.entity';
import { PostgresInitialSchema1767225600000 } from './migrations/postgres/1767225600000-initial-schema';
import { PostgresLedgerFunctions1767398400000 } from './migrations/postgres/1767398400000-ledger-functions';
import { PostgresCacheTtlAndRateLimits1767484800000 } from './migrations/postgres/1767484800000-cache-ttl-and-rate-limits';
import { PostgresKeyAllowedRoutes1767657600000 } from './migrations/postgres/1767657600000-key-allowed-routes';
import { PostgresAuditPartitions1767744000000 } from './migrations/postgres/1767744000000-audit-partitions';
import { PostgresAccountingBatch1767830400000 } from './migrations/postgres/1767830400000-accounting-batch';
import { SqliteInitialSchema1767225600000 } from './migrations/sqlite/1767225600000-initial-schema';
import { SqliteJobLeases1767312000000 } from './migrations/sqlite/1767312000000-job-leases';
import { SqliteCacheTtlAndRateLimits1767484800000 } from './migrations/sqlite/1767484800000-cache-ttl-and-rate-limits';
import { SqliteKeyAllowedRoutes1767657600000 } from './migrations/sqlite/1767657600000-key-allowed-routes';
import { AUDIT_COLUMNS } from './mappers/audit-record.mapper';
import { InThreadSqliteWriter, SqliteWriter, WorkerSqliteWriter } from './sqlite-writer';
import { TypeormAuditLogRepository } from './typeorm-audit-log.repository';
import { PgModule, PostgresChangeFeed, SqliteChangeFeed } from './typeorm-change-feed';
import { PostgresJobLock, SqliteJobLock } from './typeorm-job-lock';
import { PostgresAccountingLedger, SqliteAccountingLedger, TypeormLedger } from './typeorm-ledger';
import { TypeormRateLimitRepository } from './typeorm-rate-limit.repository';
import { SerialQueue, TypeormStore, acquireFileQueue, quoteIdentifier } from './typeorm-store';
import { TypeormVirtualKeyRepository } from './typeorm-virtual-key.repository';

const SHARED_ENTITIES = [VirtualKeyEntity, LedgerScopeEntity, LedgerReservationEntity, AuditLogEntity, RateLimitEntity];
/** How long SQLite waits for another connection's write lock before failing with SQLITE_BUSY. */
const SQLITE_BUSY_TIMEOUT_MS = 5000;
/** Bytes the WAL file is truncated to when it restarts (journal_size_limit). */
export const SQLITE_WAL_SIZE_LIMIT = 64 * 1024 * 1024;
const PG_CONNECT_TIMEOUT_MS = 10_000;
const PG_IDLE_TIMEOUT_MS = 30_000;

/**
 * A connected and migrated DataSource, and what assembling a backend on it needs: `connectTypeorm`
 * makes one (the storage selection's probe), `typeormBackend` builds the ports on it.
 */
export interface TypeormConnection {
  kind: 'sqlite' | 'postgres';
  dataSource: DataSource;
  /** SQLite: the queue every access to this file takes turns in (shared by the process's connections). */
  queue: SerialQueue | null;
  /** Lets go of the file's queue once the backend is closed. */
  release: () => void;
  /** Names the setting in errors: `SQLITE_PATH "…"` or `POSTGRES_DSN postgres://***@…`. */
  fail: (cause: string) => Error;
  facts: Record<string, unknown>;
  /** SQLite: the file (or `:memory:`). */
  file?: string;
  /** PostgreSQL: the driver module typeorm loaded, for the change feed's own client. */
  pg?: PgModule;
}

/**
 * Opens the SQLite or PostgreSQL backend: connects, runs pending migrations, pings, starts the change
 * feed, and only then resolves. On any failure it closes what it opened and rejects with an Error naming
 * the setting and the cause (never a password).
 */
export async function openTypeormBackend(kind: 'sqlite' | 'postgres', options: StorageOptions): Promise<StorageBackend> {
  return typeormBackend(await connectTypeorm(kind, options), options);
}

/** Connects and migrates (the storage selection's probe); the DataSource is initialised when it resolves. */
export function connectTypeorm(kind: 'sqlite' | 'postgres', options: StorageOptions): Promise<TypeormConnection> {
  return kind === 'sqlite' ? connectSqlite(options) : connectPostgres(options);
}

/**
 * The ports on a connected DataSource: the store, the SQLite writer thread, the change feed and the job
 * lock. On failure it closes the DataSource too and rejects like `connectTypeorm`.
 */
export async function typeormBackend(connection: TypeormConnection, options: StorageOptions): Promise<StorageBackend> {
  const { kind, dataSource, queue, release, fail, facts } = connection;
  const store = new TypeormStore(dataSource, kind, kind === 'postgres' ? (options.postgres.schema ?? 'public') : null, queue);
  const opened: Closeable[] = [store];
  try {
    if (kind === 'sqlite') store.useWriter(await openSqliteWriter(store, connection.file!, connection.file === ':memory:'));
    await store.ping();
    const schema = options.postgres.schema ?? 'public';
    const changes =
      kind === 'sqlite'
        ? await SqliteChangeFeed.start(store, options.changePollMs)
        : await PostgresChangeFeed.start(store, connection.pg!, options.postgres.dsn, schema, PG_CONNECT_TIMEOUT_MS);
    opened.unshift(changes);
    const locks = kind === 'sqlite' ? new SqliteJobLock(store) : new PostgresJobLock(store, schema);
    return new TypeormBackend(kind, store, changes, locks, facts, release);
  } catch (error) {
    await closeAll(opened).catch(() => undefined);
    release();
    throw fail(causeOf(error));
  }
}

interface Closeable {
  close(): Promise<void>;
}

class TypeormBackend implements StorageBackend {
  readonly keys: VirtualKeyRepository;
  readonly budgets: BudgetLedger;
  readonly costs: CostLedger;
  readonly accounting: SqliteAccountingLedger | PostgresAccountingLedger;
  readonly audit: AuditLogRepository;
  readonly rateLimits: ScopeRateLimitRepository;
  private closing: Promise<void> | null = null;

  constructor(
    readonly name: 'sqlite' | 'postgres',
    private readonly store: TypeormStore,
    readonly changes: SqliteChangeFeed | PostgresChangeFeed,
    readonly locks: JobLock,
    private readonly facts: Record<string, unknown>,
    private readonly afterClose: () => void = () => undefined,
  ) {
    this.keys = new TypeormVirtualKeyRepository(store);
    // One generic ledger, two instances: the ports add nothing to Ledger, and `kind` keeps their rows apart.
    const tokens = new TypeormLedger(store, 'tokens');
    const costs = new TypeormLedger(store, 'usd_micros');
    this.budgets = tokens;
    this.costs = costs;
    // Both ledgers in one transaction: SQLite's writer thread, PostgreSQL's batch function.
    this.accounting = name === 'sqlite' ? new SqliteAccountingLedger(store) : new PostgresAccountingLedger(store);
    this.audit = new TypeormAuditLogRepository(store);
    this.rateLimits = new TypeormRateLimitRepository(store);
  }

  ping(): Promise<void> {
    return this.store.ping();
  }

  async probeWrite(): Promise<void> {
    if (this.name === 'sqlite') await this.store.sqliteWrite({ type: 'probe', now: Date.now() });
    // A transaction id is what a write takes first: a standby or a read-only session refuses it.
    else await this.store.dataSource.query('SELECT txid_current()');
  }

  details(): Record<string, unknown> {
    return structuredClone(this.facts);
  }

  close(): Promise<void> {
    // PostgreSQL: the accounting calls already submitted go out before the pool closes (SQLite's writer
    // commits what it holds when the store closes).
    this.closing ??= (this.accounting instanceof PostgresAccountingLedger ? this.accounting.drain() : Promise.resolve())
      .then(() => closeAll([this.changes, this.store]))
      .finally(this.afterClose);
    return this.closing;
  }
}

async function connectSqlite(options: StorageOptions): Promise<TypeormConnection> {
  const configured = options.sqlite.path;
  const fail = (cause: string) => new Error(`SQLITE_PATH "${configured}": ${cause}`);
  const inMemory = configured === ':memory:';
  const file = inMemory ? configured : path.resolve(configured);
  const problem = inMemory ? null : await directoryProblem(path.dirname(file));
  if (problem !== null) throw fail(problem);

  const { queue, release } = inMemory ? { queue: new SerialQueue(), release: () => undefined } : acquireFileQueue(file);
  const dataSource = new DataSource({
    type: 'better-sqlite3',
    database: file,
    timeout: SQLITE_BUSY_TIMEOUT_MS,
    prepareDatabase: (db: { pragma(source: string): unknown; exec(source: string): unknown }) => {
      // A new file keeps a map of its free pages, so that the audit retention can give back what its
      // deletes free (incremental vacuum, docs/audit.md); an existing file is converted below.
      db.pragma('auto_vacuum = INCREMENTAL');
      db.pragma('journal_mode = WAL');
      // The WAL file is cut back to this size when it restarts, instead of staying as large as the
      // largest burst of writes (a big prune) since the process started.
      db.pragma(`journal_size_limit = ${SQLITE_WAL_SIZE_LIMIT}`);
      // WAL + NORMAL never corrupts and survives a process crash; only an OS crash or power loss can drop
      // the last commits. FULL would cost an fsync per reserve/commit on the hot path.
      db.pragma('synchronous = NORMAL');
      // Hold the write lock from the start until the migrations are committed (after initialize), so
      // processes opening one new file migrate one after the other instead of racing on CREATE TABLE.
      db.exec('BEGIN IMMEDIATE');
    },
    entities: [...SHARED_ENTITIES, ChangeLogEntity],
    migrations: [SqliteInitialSchema1767225600000, SqliteJobLeases1767312000000, SqliteCacheTtlAndRateLimits1767484800000, SqliteKeyAllowedRoutes1767657600000],
    migrationsRun: true,
    // Already inside the BEGIN IMMEDIATE above, which makes all pending migrations one transaction.
    migrationsTransactionMode: 'none',
    synchronize: false,
    logging: false,
  });
  try {
    // Queued like every other access: the migration transaction stays open across awaits.
    await queue.run(async () => {
      await dataSource.initialize();
      await dataSource.query('COMMIT');
      if (!inMemory) await useIncrementalVacuum(dataSource);
    });
  } catch (error) {
    if (dataSource.isInitialized) await dataSource.destroy().catch(() => undefined);
    release();
    throw fail(causeOf(error));
  }
  return { kind: 'sqlite', dataSource, queue, release, fail, facts: { path: file }, file };
}

/**
 * A file created before incremental auto-vacuum was the default is rewritten once in that mode (VACUUM
 * takes about as long as copying the file, and needs its size free beside it). Should it fail (another
 * process holds the file, the disk is too full), the file stays as it was: pruning works the same, the
 * file only does not shrink, and the next start tries again.
 */
async function useIncrementalVacuum(dataSource: DataSource): Promise<void> {
  const [{ auto_vacuum: mode }] = (await dataSource.query('PRAGMA auto_vacuum')) as Array<{ auto_vacuum: number }>;
  if (mode === 2) return;
  try {
    await dataSource.query('PRAGMA auto_vacuum = INCREMENTAL');
    await dataSource.query('VACUUM');
  } catch {
    // Kept as it was; see above.
  }
}

/**
 * The hot-path writes' group commits (ledger, audit) run in a worker thread on their own connection;
 * an in-memory database exists only on the main connection, so there they run on it.
 */
function openSqliteWriter(store: TypeormStore, file: string, inMemory: boolean): Promise<SqliteWriter> {
  const tables = { scopes: store.table('ledger_scopes'), reservations: store.table('ledger_reservations'), audit: store.table('audit_log'), auditColumns: AUDIT_COLUMNS };
  if (inMemory) return Promise.resolve(new InThreadSqliteWriter((work) => store.rawSqlite(work), tables));
  return WorkerSqliteWriter.open({ file, busyTimeoutMs: SQLITE_BUSY_TIMEOUT_MS, walSizeLimit: SQLITE_WAL_SIZE_LIMIT, tables });
}

/** Why the database directory cannot hold the file, or null when it exists (created if needed) and is writable. */
async function directoryProblem(dir: string): Promise<string | null> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    return `cannot create directory "${dir}" (${codeOf(error)})`;
  }
  try {
    await access(dir, constants.W_OK);
    return null;
  } catch (error) {
    return `directory not writable (${codeOf(error)})`;
  }
}

async function connectPostgres(options: StorageOptions): Promise<TypeormConnection> {
  const { dsn, poolMin, poolMax } = options.postgres;
  const schema = options.postgres.schema ?? 'public';
  const fail = (cause: string) => new Error(`POSTGRES_DSN ${redactUrl(dsn)}: ${withoutPassword(cause, dsn)}`);
  let dataSource: DataSource;
  try {
    dataSource = new DataSource({
      type: 'postgres',
      url: dsn,
      schema,
      applicationName: 'ditto-gateway',
      connectTimeoutMS: PG_CONNECT_TIMEOUT_MS,
      // pg-pool 3 options: `min` idle connections are kept, `max` caps the pool.
      extra: { min: poolMin, max: poolMax, idleTimeoutMillis: PG_IDLE_TIMEOUT_MS },
      entities: SHARED_ENTITIES,
      migrations: [PostgresInitialSchema1767225600000, PostgresLedgerFunctions1767398400000, PostgresCacheTtlAndRateLimits1767484800000, PostgresKeyAllowedRoutes1767657600000, PostgresAuditPartitions1767744000000, PostgresAccountingBatch1767830400000],
      migrationsRun: true,
      synchronize: false,
      logging: false,
    });
  } catch (error) {
    throw fail(causeOf(error));
  }
  // typeorm has loaded `pg` for its driver; the change feed needs the same module for its own client.
  const pg = (dataSource.driver as unknown as { postgres: PgModule }).postgres;
  try {
    await migrate(pg, dsn, schema, dataSource);
  } catch (error) {
    if (dataSource.isInitialized) await dataSource.destroy().catch(() => undefined);
    throw fail(causeOf(error));
  }
  guardPooledClients(dataSource);
  const facts = { dsn: redactUrl(dsn), schema, pool: { min: poolMin, max: poolMax } };
  return { kind: 'postgres', dataSource, queue: null, release: () => undefined, fail, facts, pg };
}

/**
 * Creates the schema and runs migrations (DataSource.initialize) while holding a session-level advisory
 * lock, so replicas starting together migrate one after the other instead of racing on CREATE TABLE.
 * Ending the session releases the lock.
 */
async function migrate(pg: PgModule, dsn: string, schema: string, dataSource: DataSource): Promise<void> {
  const client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(`SELECT pg_advisory_lock(hashtext('ditto-gateway migrations ' || ${quoteLiteral(schema)}))`);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`);
    await dataSource.initialize();
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A pooled connection the server terminates (pg_terminate_backend, a restart, a failover) while it is
 * checked out between two queries emits `error` with no listener on it (pg-pool listens on idle
 * connections only; TypeORM's query runner stops listening after the first error), and an unheard
 * `error` ends the process. Every connection gets a listener of its own when first handed out: the
 * failure still reaches the query that uses it (503 storage_unavailable), never the process.
 */
function guardPooledClients(dataSource: DataSource): void {
  const pool = (dataSource.driver as unknown as { master: { on(event: 'acquire', listener: (client: { on(event: 'error', listener: () => void): void }) => void): void } }).master;
  const guarded = new WeakSet<object>();
  pool.on('acquire', (client) => {
    if (guarded.has(client)) return;
    guarded.add(client);
    client.on('error', () => undefined);
  });
}

async function closeAll(resources: Closeable[]): Promise<void> {
  for (const resource of resources) await resource.close();
}

function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}

/** The most useful one-line cause: Node reports a refused dual-stack connect as an AggregateError
 * with an empty message, and driver errors carry a code worth keeping. */
function causeOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return causeOf(error.errors[0]);
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const message = error.message || error.name;
  return typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message;
}
