import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { SqliteDatabase, SqliteGroupCommit, SqliteOutcome, SqliteTables, SqliteWrite, outcomeError } from './sqlite-group-commit';
import type { SqliteWorkerData } from './sqlite-writer.worker';

/**
 * Where the SQLite hot path writes go (ledger reserve/settle, audit appends): collected per event-loop
 * turn and run as one group commit (SqliteGroupCommit). `submit` resolves with the write's value once
 * its batch has committed, or rejects with the error that rolled it back.
 */
export abstract class SqliteWriter {
  private batch: Array<{ write: SqliteWrite; resolve: (value: unknown) => void; reject: (error: Error) => void }> = [];

  submit(write: SqliteWrite): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.batch.push({ write, resolve, reject });
      if (this.batch.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Commits what is waiting for its turn, then releases the connection. */
  async close(): Promise<void> {
    this.flush();
    await this.stop();
  }

  protected abstract execute(writes: SqliteWrite[]): Promise<SqliteOutcome[]>;
  protected abstract stop(): Promise<void>;

  private flush(): void {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.execute(batch.map((b) => b.write)).then(
      (outcomes) =>
        batch.forEach(({ resolve, reject }, i) => {
          const outcome = outcomes[i];
          if (outcome.ok) resolve(outcome.value);
          else reject(outcomeError(outcome.error));
        }),
      (error: Error) => batch.forEach(({ reject }) => reject(error)),
    );
  }
}

/**
 * The group commits run on the main connection, queued with every other access to it. For a database
 * only this connection can see (`:memory:`); every write's SQLite work is on the event loop.
 */
export class InThreadSqliteWriter extends SqliteWriter {
  private commit: SqliteGroupCommit | null = null;

  /** `onConnection` runs its callback on the main connection, queued with everything else on it. */
  constructor(
    private readonly onConnection: <T>(work: (db: SqliteDatabase) => T) => Promise<T>,
    private readonly tables: SqliteTables,
  ) {
    super();
  }

  protected execute(writes: SqliteWrite[]): Promise<SqliteOutcome[]> {
    return this.onConnection((db) => (this.commit ??= new SqliteGroupCommit(db, this.tables)).run(writes));
  }

  protected async stop(): Promise<void> {
    // Queued behind the last batch; the main connection itself is closed by its owner.
    await this.onConnection(() => undefined);
  }
}

/**
 * The group commits run in a worker thread on a connection of its own, so the statements, the COMMIT's
 * WAL writes and any wait for another process's write lock are off the event loop: on the main thread a
 * write costs one message per batch (docs/benchmarks.md). SQLite's locking keeps it consistent with
 * the main connection (admin changes, reaping, listing) and with other processes on the file.
 * A worker that dies fails the batches it had; the next batch starts a new one.
 */
export class WorkerSqliteWriter extends SqliteWriter {
  private worker: Promise<Worker> | null = null;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (outcomes: SqliteOutcome[]) => void; reject: (error: Error) => void }>();
  /** Settles with the last batch sent (stop waits for it). */
  private lastBatch: Promise<unknown> = Promise.resolve();

  private constructor(private readonly data: SqliteWorkerData) {
    super();
  }

  /** Starts the worker and waits until its connection is open (so a file it cannot open fails start-up). */
  static async open(data: SqliteWorkerData): Promise<WorkerSqliteWriter> {
    const writer = new WorkerSqliteWriter(data);
    await writer.started();
    return writer;
  }

  protected execute(writes: SqliteWrite[]): Promise<SqliteOutcome[]> {
    const sent = this.started().then(
      (worker) =>
        new Promise<SqliteOutcome[]>((resolve, reject) => {
          const seq = ++this.seq;
          // Referenced only while a batch is out: an idle writer does not keep the process alive.
          if (this.pending.size === 0) worker.ref();
          this.pending.set(seq, { resolve, reject });
          worker.postMessage({ seq, writes });
        }),
    );
    this.lastBatch = sent.catch(() => undefined);
    return sent;
  }

  protected async stop(): Promise<void> {
    await this.lastBatch;
    if (this.worker === null) return;
    const worker = await this.worker.catch(() => null);
    this.worker = null;
    if (worker === null) return;
    // Answers to every batch sent come before the exit, so nothing in flight is lost.
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    // Referenced until it has exited: idle, it is unreferenced, and a process with nothing else left
    // to do (the HTTP server already closed) would end here, in the middle of its shutdown.
    worker.ref();
    worker.postMessage({ close: true });
    await exited;
  }

  private started(): Promise<Worker> {
    if (this.worker === null) {
      // Forgotten once it fails to start or its thread ends, so the next batch starts a new one.
      const started: Promise<Worker> = this.spawn(() => {
        if (this.worker === started) this.worker = null;
      });
      started.catch(() => undefined);
      this.worker = started;
    }
    return this.worker;
  }

  private spawn(gone: () => void): Promise<Worker> {
    const worker = startWorker(this.data);
    return new Promise((resolve, reject) => {
      const fail = (error: Error) => {
        gone();
        for (const { reject: rejectBatch } of this.pending.values()) rejectBatch(error);
        this.pending.clear();
        reject(error);
      };
      worker.on('message', (message: { ready?: true; failed?: string; seq?: number; outcomes?: SqliteOutcome[] }) => {
        if (message.ready) {
          worker.unref();
          resolve(worker);
        } else if (message.failed !== undefined) {
          void worker.terminate();
          fail(new Error(message.failed));
        } else {
          const batch = this.pending.get(message.seq!);
          this.pending.delete(message.seq!);
          if (this.pending.size === 0) worker.unref();
          batch?.resolve(message.outcomes!);
        }
      });
      worker.once('error', (error) => fail(error));
      // Also when it ends idle: a batch posted to an ended thread would never be answered.
      worker.once('exit', (code) => fail(new Error(`the SQLite writer thread exited (${code})`)));
    });
  }
}

/**
 * Compiled (dist/), the worker is a JavaScript file next to this one. Run from the TypeScript sources
 * (Jest), it is compiled on the fly with @swc/core, a dev dependency that only tests use.
 */
function startWorker(data: SqliteWorkerData): Worker {
  const compiled = path.join(__dirname, 'sqlite-writer.worker.js');
  if (existsSync(compiled)) return new Worker(compiled, { workerData: data });
  const boot = `
    const { workerData } = require('node:worker_threads');
    const { transformSync } = require(workerData.swc);
    const fs = require('node:fs');
    require.extensions['.ts'] = (module, filename) => {
      const options = { filename, jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } };
      module._compile(transformSync(fs.readFileSync(filename, 'utf8'), options).code, filename);
    };
    require(workerData.entry);`;
  const entry = path.join(__dirname, 'sqlite-writer.worker.ts');
  return new Worker(boot, { eval: true, workerData: { ...data, entry, swc: require.resolve('@swc/core') } });
}
