import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { AccountingLedger } from '../../src/storage/ports/accounting-ledger';
import { RedisKeys } from '../../src/storage/backends/redis/redis-keys';
import { RedisAccountingLedger } from '../../src/storage/backends/redis/redis-ledger';
import { defineScripts } from '../../src/storage/backends/redis/redis-scripts';
import { openRedisBackend } from '../../src/storage/backends/redis/redis.backend';
import { StorageBackend } from '../../src/storage/ports/storage-backend';
import { TURN_ANSWERS, expectTurnCharged, prepareTurn, submitTurn } from './accounting-turn';
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
  // Accounting calls wait for the end of the event-loop turn to go out together: closing the backend in
  // the same turn must still send them, not fail them on a closed connection.
  it('commits accounting calls submitted just before close', async () => {
    const { open, teardown } = await target.prepare();
    const backend = await open();
    const reserved = backend.accounting!.reserve('last', ['key:last'], { tokens: 5, usdMicros: 7 });
    await backend.close();
    await expect(reserved).resolves.toEqual({ ok: true });
    const reopened = await open();
    try {
      expect(await reopened.budgets.get('key:last')).toMatchObject({ reserved: 5 });
    } finally {
      await reopened.close();
      await teardown();
    }
  });

  it('reads a key stored before the response cache as following the global TTL', async () => {
    const { open, teardown } = await target.prepare();
    const backend = await open();
    const raw = new Redis(testStorageOptions().redis.url);
    try {
      const keys = new RedisKeys((backend.details() as { prefix: string }).prefix);
      // eslint-disable-next-line @typescript-eslint/no-unused-vars
      const { cache, allowedRoutes, ...old } = sampleKey('old', { limits: { rpm: 60, tpm: null } });
      await raw.hset(keys.vk.records, 'old', JSON.stringify(old));
      expect(await backend.keys.get('old')).toEqual({ ...old, cache: { ttlSecs: null }, allowedRoutes: [] });
    } finally {
      raw.disconnect();
      await backend.close();
      await teardown();
    }
  });
});

/**
 * The script calls (EVALSHA or EVAL) Redis executes on keys under `prefix` while `work` runs, as MONITOR
 * shows them: what reaches the server, whoever else shares it (never CONFIG RESETSTAT on a shared server).
 */
async function scriptCallsDuring(prefix: string, work: () => Promise<void>): Promise<number> {
  const raw = new Redis(testStorageOptions().redis.url);
  const monitor = await raw.monitor();
  try {
    const done = `${prefix}:monitor-done`;
    let calls = 0;
    let seenDone: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (seenDone = resolve));
    monitor.on('monitor', (_time: string, args: string[]) => {
      const command = args[0].toLowerCase();
      if ((command === 'evalsha' || command === 'eval') && args.some((a) => a.startsWith(`${prefix}:`))) calls += 1;
      // Redis reports commands in the order it runs them: once this one is seen, so is all of `work`.
      if (command === 'echo' && args[1] === done) seenDone();
    });
    await work();
    await raw.echo(done);
    await finished;
    return calls;
  } finally {
    monitor.disconnect();
    raw.disconnect();
  }
}

describe('redis accounting ledger: batched script calls', () => {
  const HOUR = 3_600_000;
  const T0 = 1_700_000_000_000 - (1_700_000_000_000 % HOUR) + 1000;
  let teardown: () => Promise<void>;
  let backend: StorageBackend;
  let accounting: AccountingLedger;
  let prefix: string;

  beforeEach(async () => {
    const store = await target.prepare();
    teardown = store.teardown;
    backend = await store.open();
    accounting = backend.accounting!;
    prefix = (backend.details() as { prefix: string }).prefix;
    // Loads the script, so the calls counted below are not a NOSCRIPT answer and its EVAL retry.
    await accounting.settle('warm-up', null, T0);
  });

  afterEach(async () => {
    await backend.close();
    await teardown();
  });

  it('sends reserves in batches of four as they come, settles riding along, every call answered in submission order', async () => {
    await prepareTurn(backend, accounting, T0);
    let answers: unknown[] = [];
    const calls = await scriptCallsDuring(prefix, async () => {
      answers = await submitTurn(accounting, T0);
    });
    // 15 reserves: three batches of four went out as they filled, the last three (and the two settles
    // after them) at the end of the turn.
    expect(calls).toBe(4);
    expect(answers).toEqual(TURN_ANSWERS);
    await expectTurnCharged(backend, T0);
  });

  it('admits exactly the first reserves submitted, whichever batch carried them', async () => {
    await backend.budgets.setLimit('key:many', 3000, null, T0);
    let results: { ok: boolean }[] = [];
    const calls = await scriptCallsDuring(prefix, async () => {
      results = await Promise.all(
        Array.from({ length: 600 }, (_, i) => accounting.reserve(`m${i}`, ['key:many'], { tokens: 10, usdMicros: 0 }, T0)),
      );
    });
    expect(calls).toBe(150);
    expect(results.map((r) => r.ok)).toEqual(Array.from({ length: 600 }, (_, i) => i < 300));
    expect(await backend.budgets.get('key:many', T0)).toMatchObject({ reserved: 3000 });
  });

  it('splits more than 256 waiting calls into several script calls, still in submission order', async () => {
    await backend.budgets.setLimit('key:split', 1000, null, T0);
    expect(await accounting.reserve('s1', ['key:split'], { tokens: 10, usdMicros: 0 }, T0)).toEqual({ ok: true });
    let results: unknown[] = [];
    const calls = await scriptCallsDuring(prefix, async () => {
      // Settles wait for each other (no reserve sends them early): 600 in one turn, the real one last.
      results = await Promise.all([
        ...Array.from({ length: 599 }, (_, i) => accounting.settle(`unknown${i}`, { tokens: 1, usdMicros: 1 }, T0)),
        accounting.settle('s1', { tokens: 7, usdMicros: 0 }, T0),
      ]);
    });
    expect(calls).toBe(3);
    expect(results.slice(0, 599).every((r) => JSON.stringify(r) === JSON.stringify({ tokens: false, usdMicros: false }))).toBe(true);
    expect(results[599]).toEqual({ tokens: true, usdMicros: true });
    expect(await backend.budgets.get('key:split', T0)).toMatchObject({ reserved: 0, spent: 7 });
  });

  it('rejects every caller of a batch whose script call fails, and reserves nothing', async () => {
    const redis = new Redis(testStorageOptions().redis.url, { enableAutoPipelining: true });
    redis.on('error', () => undefined);
    defineScripts(redis);
    const ledger = new RedisAccountingLedger(redis, new RedisKeys(prefix));
    await backend.budgets.setLimit('key:down', 1000, null, T0);
    await redis.ping();
    // Three reserves (fewer than a batch that goes out at once) and a settle.
    const calls = [
      ...Array.from({ length: 3 }, (_, i) => ledger.reserve(`d${i}`, ['key:down', 'tenant:down'], { tokens: 10, usdMicros: 10 }, T0)),
      ledger.settle('d0', { tokens: 1, usdMicros: 1 }, T0),
    ];
    // Gone before the batch is flushed at the end of this turn.
    redis.disconnect();
    const outcomes = await Promise.allSettled(calls);
    expect(outcomes.map((o) => o.status)).toEqual(calls.map(() => 'rejected'));
    // All with the one error of the call: here the lost connection's.
    const errors = new Set(outcomes.map((o) => (o as PromiseRejectedResult).reason as Error));
    expect([...errors].map((e) => e.message)).toEqual(['Connection is closed.']);
    expect(await backend.budgets.get('key:down', T0)).toMatchObject({ reserved: 0 });
    expect(await backend.budgets.listReservations(T0 + 1)).toEqual([]);
    expect(await backend.costs.listReservations(T0 + 1)).toEqual([]);
  });

  it('fails only the call whose keys are broken, not the others of its batch', async () => {
    const raw = new Redis(testStorageOptions().redis.url);
    try {
      await raw.set(`${new RedisKeys(prefix).ledger('tokens').scopePrefix}key:broken`, 'not a hash');
    } finally {
      raw.disconnect();
    }
    const outcomes = await Promise.allSettled([
      accounting.reserve('before', ['key:fine'], { tokens: 10, usdMicros: 10 }, T0),
      accounting.reserve('broken', ['key:broken'], { tokens: 10, usdMicros: 10 }, T0),
      accounting.reserve('after', ['key:fine'], { tokens: 10, usdMicros: 10 }, T0),
    ]);
    expect(outcomes[0]).toEqual({ status: 'fulfilled', value: { ok: true } });
    expect(outcomes[1]).toMatchObject({ status: 'rejected', reason: { message: expect.stringContaining('WRONGTYPE') } });
    expect(outcomes[2]).toEqual({ status: 'fulfilled', value: { ok: true } });
    expect(await backend.budgets.get('key:fine', T0)).toMatchObject({ reserved: 20 });
  });
});
