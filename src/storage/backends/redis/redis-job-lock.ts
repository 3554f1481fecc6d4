import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { JobLease, JobLock, JobLockResult } from '../../ports/job-lock';
import { RedisKeys } from './redis-keys';
import { runScript } from './redis-scripts';

/**
 * A job lock is one key, `<prefix>:lock:<name>`, holding a random id per call: `SET NX PX` takes it
 * only when absent, and the server lets it lapse after `ttlMs` should the holder die. Release is a
 * compare-and-delete script, so a holder whose lease already lapsed never frees the next holder's;
 * renewal is a compare-and-PEXPIRE script likewise.
 */
export class RedisJobLock extends JobLock {
  private readonly logger = new Logger(RedisJobLock.name);

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    super();
  }

  async runExclusive<T>(name: string, ttlMs: number, work: (lease: JobLease) => Promise<T>): Promise<JobLockResult<T>> {
    const key = this.keys.lock(name);
    const holder = randomUUID();
    // PX takes whole milliseconds.
    if ((await this.redis.set(key, holder, 'PX', Math.ceil(ttlMs), 'NX')) === null) return { ran: false };
    const lease: JobLease = {
      renew: async () => Number(await runScript(this.redis, 'jobLockRenew', [key], [holder, Math.ceil(ttlMs)])) === 1,
    };
    try {
      return { ran: true, value: await work(lease) };
    } finally {
      // The outcome of `work` is what the caller needs; an unreleased lease lapses after ttlMs anyway.
      await runScript(this.redis, 'jobLockRelease', [key], [holder]).catch((error: unknown) =>
        this.logger.warn(`job lock '${name}' not released (${describe(error)}); it lapses within ${ttlMs} ms`),
      );
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
