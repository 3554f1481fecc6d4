import { JobLease, JobLock, JobLockResult } from '../../ports/job-lock';

/**
 * Job locks of one process (memory and state backends: nothing is shared between replicas there).
 * A lock also lapses `ttlMs` after it was taken or renewed, as the shared backends' leases do, so a
 * `work` that hangs cannot stop a job for good and every backend answers alike.
 */
export class MemoryJobLock extends JobLock {
  private readonly held = new Map<string, { holder: object; expiresAt: number }>();

  async runExclusive<T>(name: string, ttlMs: number, work: (lease: JobLease) => Promise<T>): Promise<JobLockResult<T>> {
    // No await before the lock is recorded: check and take happen in one turn of the event loop.
    const now = Date.now();
    if ((this.held.get(name)?.expiresAt ?? 0) > now) return { ran: false };
    const holder = {};
    const entry = { holder, expiresAt: now + ttlMs };
    this.held.set(name, entry);
    const lease: JobLease = {
      renew: async () => {
        const at = Date.now();
        if (this.held.get(name) !== entry || entry.expiresAt <= at) return false;
        entry.expiresAt = at + ttlMs;
        return true;
      },
    };
    try {
      return { ran: true, value: await work(lease) };
    } finally {
      // After a lapse another call may hold the lock: only the holder frees it.
      if (this.held.get(name)?.holder === holder) this.held.delete(name);
    }
  }
}
