import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { mongo } from 'mongoose';
import { JobLease, JobLock, JobLockResult } from '../../ports/job-lock';
import { int64 } from './mongoose.mappers';
import { JobLeaseDoc, MongooseModels, driverCollection, isDuplicateKey } from './mongoose.schemas';

/**
 * A job lock is a lease document `{ _id: name, holder, expires_at }` with a random holder per call.
 * Taking it is one upsert guarded by `expires_at <= now`: it updates a lapsed lease, inserts when there
 * is none, and, when a live lease exists, fails on the `_id` unique index (E11000), which means "held".
 * Renewal moves `expires_at` on, and release deletes the document, only while this holder still has
 * a live lease.
 */
export class MongooseJobLock extends JobLock {
  private readonly logger = new Logger(MongooseJobLock.name);
  private readonly leases: mongo.Collection<JobLeaseDoc>;

  constructor(models: MongooseModels) {
    super();
    this.leases = driverCollection(models.leases);
  }

  async runExclusive<T>(name: string, ttlMs: number, work: (lease: JobLease) => Promise<T>): Promise<JobLockResult<T>> {
    const holder = randomUUID();
    if (!(await this.acquire(name, holder, ttlMs))) return { ran: false };
    const lease: JobLease = {
      renew: async () => {
        const now = Date.now();
        const { matchedCount } = await this.leases.updateOne(
          { _id: name, holder, expires_at: { $gt: int64(now) } },
          { $set: { expires_at: int64(now + Math.ceil(ttlMs)) } },
        );
        return matchedCount === 1;
      },
    };
    try {
      return { ran: true, value: await work(lease) };
    } finally {
      // The outcome of `work` is what the caller needs; an unreleased lease lapses after ttlMs anyway.
      await this.leases.deleteOne({ _id: name, holder }).catch((error: unknown) =>
        this.logger.warn(`job lock '${name}' not released (${describe(error)}); it lapses within ${ttlMs} ms`),
      );
    }
  }

  private async acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    // Replicas compare their own clocks: skew between them only shortens or stretches a lease by as much.
    const now = Date.now();
    try {
      await this.leases.updateOne(
        { _id: name, expires_at: { $lte: int64(now) } },
        { $set: { holder, expires_at: int64(now + Math.ceil(ttlMs)) } },
        { upsert: true },
      );
      return true;
    } catch (error) {
      if (isDuplicateKey(error)) return false;
      throw error;
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
