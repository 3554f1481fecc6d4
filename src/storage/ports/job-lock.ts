/**
 * Cross-replica mutual exclusion for scheduled jobs (the audit retention prune, the reservation
 * reaper): of all instances sharing the store, at most one runs `work` under a given name at a time.
 *
 * Per backend (issue: audit retention): redis `SET NX PX` + compare-and-delete, postgres a session
 * advisory lock held on one pooled connection, sqlite and mongodb a lease row, memory/state an
 * in-process flag. A lease frees itself `ttlMs` after its holder died, so callers keep `work`
 * shorter than `ttlMs` (bounded batches).
 */
export abstract class JobLock {
  /** Runs `work` holding the lock `name`, then releases it; answers `{ ran: false }` at once, without
   * running anything, when another holder has the lock. Errors thrown by `work` propagate after release. */
  abstract runExclusive<T>(name: string, ttlMs: number, work: () => Promise<T>): Promise<JobLockResult<T>>;
}

export type JobLockResult<T> = { ran: true; value: T } | { ran: false };
