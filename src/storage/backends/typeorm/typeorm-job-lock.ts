import { createHash, randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { QueryRunner } from 'typeorm';
import { JobLease, JobLock, JobLockResult } from '../../ports/job-lock';
import { TypeormStore } from './typeorm-store';

/**
 * SQLite: a job lock is a lease row in `job_leases` with a random holder per call. Taking it is one
 * upsert that only overwrites a lapsed lease; renewal moves `expires_at` on, and release deletes the
 * row, only while this holder has a live lease. All go through the store's queue like every other
 * access, `work` runs outside it.
 */
export class SqliteJobLock extends JobLock {
  private readonly logger = new Logger(SqliteJobLock.name);
  private readonly table: string;

  constructor(private readonly store: TypeormStore) {
    super();
    this.table = store.table('job_leases');
  }

  async runExclusive<T>(name: string, ttlMs: number, work: (lease: JobLease) => Promise<T>): Promise<JobLockResult<T>> {
    const holder = randomUUID();
    const taken = await this.store.session((s) => {
      // Read the clock once queued: a lease must last ttlMs from when it was written.
      const now = Date.now();
      return s.run(
        `INSERT INTO ${this.table} (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE ${this.table}.expires_at <= $4`,
        [name, holder, now + Math.ceil(ttlMs), now],
      );
    });
    if (taken === 0) return { ran: false };
    const lease: JobLease = {
      renew: () =>
        this.store.session(async (s) => {
          const now = Date.now();
          const renewed = await s.run(
            `UPDATE ${this.table} SET expires_at = $1 WHERE name = $2 AND holder = $3 AND expires_at > $4`,
            [now + Math.ceil(ttlMs), name, holder, now],
          );
          return renewed === 1;
        }),
    };
    try {
      return { ran: true, value: await work(lease) };
    } finally {
      // The outcome of `work` is what the caller needs; an unreleased lease lapses after ttlMs anyway.
      await this.store
        .session((s) => s.run(`DELETE FROM ${this.table} WHERE name = $1 AND holder = $2`, [name, holder]))
        .catch((error: unknown) =>
          this.logger.warn(`job lock '${name}' not released (${describe(error)}); it lapses within ${ttlMs} ms`),
        );
    }
  }
}

/**
 * PostgreSQL: a job lock is a session-level advisory lock, held on one pooled connection of its own
 * for as long as `work` runs (`work` itself uses other connections). It has no lease: `ttlMs` is not
 * used, because PostgreSQL frees the lock the moment that session ends, whether the process closed it
 * or died. The pool must therefore have a connection to spare beyond those `work` uses. Renewing
 * asks that connection whether it is still alive.
 */
export class PostgresJobLock extends JobLock {
  private readonly logger = new Logger(PostgresJobLock.name);

  constructor(
    private readonly store: TypeormStore,
    private readonly schema: string,
  ) {
    super();
  }

  async runExclusive<T>(name: string, _ttlMs: number, work: (lease: JobLease) => Promise<T>): Promise<JobLockResult<T>> {
    const key = advisoryKey(this.schema, name);
    const runner = this.store.dataSource.createQueryRunner();
    let locked: boolean;
    try {
      const [row] = (await runner.query('SELECT pg_try_advisory_lock($1::bigint) AS locked', [key])) as { locked: boolean }[];
      locked = row.locked;
    } catch (error) {
      await discard(runner, error);
      throw error;
    }
    if (!locked) {
      await runner.release();
      return { ran: false };
    }
    const lease: JobLease = {
      renew: async () => {
        if (runner.isReleased) return false;
        try {
          await runner.query('SELECT 1');
          return true;
        } catch {
          // The session is gone, and the lock with it.
          return false;
        }
      },
    };
    try {
      return { ran: true, value: await work(lease) };
    } finally {
      await this.unlock(runner, name, key);
    }
  }

  private async unlock(runner: QueryRunner, name: string, key: string): Promise<void> {
    // Closing the backend meanwhile handed the connection back and ended the pool: that ended the
    // session, and the lock with it.
    if (runner.isReleased) return;
    try {
      await runner.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
      await runner.release();
    } catch (error) {
      // A connection that may still hold the lock must not go back to the pool: closing it frees the lock.
      await discard(runner, error);
      this.logger.warn(`job lock '${name}': unlock failed (${describe(error)}); its connection was closed instead`);
    }
  }
}

/**
 * The advisory lock key of `name`: 64 bits of a hash that includes the schema, so gateways on other
 * schemas of one database never contend. Every gateway version must derive it alike: keep it fixed.
 */
function advisoryKey(schema: string, name: string): string {
  return createHash('sha256').update(`ditto-gateway job lock\0${schema}\0${name}`).digest().readBigInt64BE(0).toString();
}

/** Hands the connection back to the pool as broken, so pg-pool closes it rather than reusing it. */
async function discard(runner: QueryRunner, error: unknown): Promise<void> {
  // TypeORM's PostgresQueryRunner passes this error to pg-pool's release; its public release() passes none.
  const postgres = runner as unknown as { releasePostgresConnection(err?: Error): Promise<void> };
  await postgres.releasePostgresConnection(error instanceof Error ? error : new Error(String(error)));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
