/**
 * Worker thread of WorkerSqliteWriter: its own better-sqlite3 connection to the database file, running
 * each batch it is sent as one group commit (SqliteGroupCommit) and answering with the outcomes.
 * In: `{ seq, writes }`, then `{ close: true }`. Out: `{ ready: true }` once open (or `{ failed }`), then
 * `{ seq, outcomes }` per batch.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteDatabase, SqliteGroupCommit, SqliteTables, SqliteWrite } from './sqlite-group-commit';

export interface SqliteWorkerData {
  file: string;
  busyTimeoutMs: number;
  /** journal_size_limit, as on the main connection. */
  walSizeLimit?: number;
  tables: SqliteTables;
}

/** better-sqlite3 ships no types (TypeORM loads it for the main connection); what the worker uses of it. */
type OpenDatabase = new (file: string, options: { timeout: number; fileMustExist: boolean }) => SqliteDatabase & {
  pragma(source: string): unknown;
  close(): void;
};

const port = parentPort!;
const { file, busyTimeoutMs, walSizeLimit, tables } = workerData as SqliteWorkerData;
try {
  const Database = require('better-sqlite3') as OpenDatabase;
  const db = new Database(file, { timeout: busyTimeoutMs, fileMustExist: true });
  // Per connection, as on the main one: WAL (a property of the file) with NORMAL survives a process
  // crash without an fsync per commit.
  db.pragma('synchronous = NORMAL');
  if (walSizeLimit !== undefined) db.pragma(`journal_size_limit = ${walSizeLimit}`);
  const commit = new SqliteGroupCommit(db, tables);
  port.on('message', (message: { seq: number; writes: SqliteWrite[] } | { close: true }) => {
    if ('close' in message) {
      db.close();
      port.close();
      return;
    }
    port.postMessage({ seq: message.seq, outcomes: commit.run(message.writes) });
  });
  port.postMessage({ ready: true });
} catch (error) {
  port.postMessage({ failed: (error as Error).message });
}
