import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { openRedisBackend } from '../../src/storage/backends/redis/redis.backend';
import { describeStorageContract } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';
import { testStorageOptions } from './options';

/** Deletes every key under the prefix. The server is shared with other runs: never FLUSHDB. */
async function deletePrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url);
  try {
    const stream = redis.scanStream({ match: `${prefix}:*`, count: 1000 });
    for await (const keys of stream as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.unlink(...keys);
    }
  } finally {
    redis.disconnect();
  }
}

const target: ContractTarget = {
  name: 'redis',
  shared: true,
  persistent: true,
  prepare: async () => {
    const base = testStorageOptions();
    const prefix = `ditto-test-${randomBytes(6).toString('hex')}`;
    const options = testStorageOptions({ redis: { ...base.redis, prefix } });
    return {
      open: () => openRedisBackend(options),
      teardown: () => deletePrefix(options.redis.url, prefix),
    };
  },
};

describeStorageContract(target);
describeJobLockContract(target, { freedBy: 'ttl' });
