import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisKeys } from '../../src/storage/backends/redis/redis-keys';
import { openRedisBackend } from '../../src/storage/backends/redis/redis.backend';
import { describeStorageContract, sampleKey } from './contract';
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

describe('redis backend', () => {
  it('reads a key stored before the response cache as following the global TTL', async () => {
    const { open, teardown } = await target.prepare();
    const backend = await open();
    const raw = new Redis(testStorageOptions().redis.url);
    try {
      const keys = new RedisKeys((backend.details() as { prefix: string }).prefix);
      // eslint-disable-next-line @typescript-eslint/no-unused-vars
      const { cache, ...old } = sampleKey('old', { limits: { rpm: 60, tpm: null } });
      await raw.hset(keys.vk.records, 'old', JSON.stringify(old));
      expect(await backend.keys.get('old')).toEqual({ ...old, cache: { ttlSecs: null } });
    } finally {
      raw.disconnect();
      await backend.close();
      await teardown();
    }
  });
});
