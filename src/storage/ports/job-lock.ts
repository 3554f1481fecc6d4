/**
 * Cross-replica mutual exclusion for scheduled jobs (the audit retention prune, the reservation
 * reaper): of all instances sharing the store, at most one runs `work` under a given name at a time.
 *
 * Per backend (issue: audit retention): redis `SET NX PX` + compare-and-delete, postgres a session
 * advisory lock held on one pooled connection, sqlite and mongodb a lease row, memory/state an
 * in-process flag. A lease frees itself `ttlMs` after it was last taken or renewed, so a holder that
 * died (or hangs) stops no job for good; a `work` that runs longer than `ttlMs` renews its lease while
 * it makes progress (`JobLease.renew`).
 */
export abstract class JobLock {
  /** Runs `work` holding the lock `name`, then releases it; answers `{ ran: false }` at once, without
   * running anything, when another holder has the lock. Errors thrown by `work` propagate after release. */
  abstract runExclusive<T>(name: string, ttlMs: number, work: (lease: JobLease) => Promise<T>): Promise<JobLockResult<T>>;
}

/** The lock `work` runs under. */
export interface JobLease {
  /**
   * Makes the lease last `ttlMs` from now again. Resolves false when it is no longer this holder's:
   * it lapsed (another holder may have it by now) or, without a lease (postgres), the session holding
   * the lock ended; `work` should stop then. Rejects when the store could not be asked.
   */
  renew(): Promise<boolean>;
}

export type JobLockResult<T> = { ran: true; value: T } | { ran: false };
