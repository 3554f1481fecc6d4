import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryLedger } from '../storage/backends/memory/memory-ledger';
import { AccountingLedger, LedgerAmounts, ParallelAccountingLedger } from '../storage/ports/accounting-ledger';
import { SettleRecovery } from './settle-recovery.service';

/** The memory store's ledgers behind a switch that makes every call fail, as a store that went away. */
class Outage extends AccountingLedger {
  down = false;
  constructor(readonly inner: AccountingLedger) {
    super();
  }
  reserve(id: string, scopes: string[], amounts: LedgerAmounts) {
    return this.down ? Promise.reject(new Error('connection refused')) : this.inner.reserve(id, scopes, amounts);
  }
  settle(id: string, actual: LedgerAmounts | null) {
    return this.down ? Promise.reject(new Error('connection refused')) : this.inner.settle(id, actual);
  }
}

async function until(probe: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > ms) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SettleRecovery', () => {
  let dir: string;
  const tokens = new MemoryLedger();
  const costs = new MemoryLedger();
  const store = new Outage(new ParallelAccountingLedger(tokens, costs));
  const open: SettleRecovery[] = [];

  const recovery = async () => {
    const metrics = new MetricsService();
    const service = new SettleRecovery(store, metrics, { dataDir: dir } as never, { maxEntries: 100, maxBytes: 1 << 20 });
    await service.onModuleInit();
    open.push(service);
    return { service, metric: async (name: string) => (await metrics.registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0 };
  };

  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'ditto-recovery-'))));
  afterEach(async () => {
    store.down = false;
    for (const service of open.splice(0)) await service.onApplicationShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('replays journaled settles once the store answers, refusing admissions until then, each charged once', async () => {
    const { service, metric } = await recovery();
    await store.reserve('a', ['key:r'], { tokens: 50, usdMicros: 500 });
    await store.reserve('b', ['key:r'], { tokens: 50, usdMicros: 500 });
    // `a` reached the store and its answer was lost: replaying it must not charge it again.
    await store.settle('a', { tokens: 20, usdMicros: 200 });
    store.down = true;
    await service.defer('a', { tokens: 20, usdMicros: 200 });
    await service.defer('b', { tokens: 30, usdMicros: 300 });
    expect(service.depth).toBe(2);
    expect(() => service.assertCaughtUp()).toThrow(expect.objectContaining({ code: 'storage_unavailable' }));
    // Replays fail while the store is down, and keep failing: nothing leaves the journal.
    await until(async () => (await metric('ditto_settle_retries_total')) >= 2);
    expect(service.depth).toBe(2);
    store.down = false;
    await until(() => service.depth === 0);
    expect(() => service.assertCaughtUp()).not.toThrow();
    expect(await tokens.get('key:r')).toMatchObject({ spent: 50, reserved: 0 });
    expect(await costs.get('key:r')).toMatchObject({ spent: 500, reserved: 0 });
    expect(await metric('ditto_settle_replays_total')).toBe(2);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves what it could not replay for the next start, which replays it first', async () => {
    const first = await recovery();
    await store.reserve('c', ['key:s'], { tokens: 10, usdMicros: 0 });
    store.down = true;
    await first.service.defer('c', { tokens: 7, usdMicros: 0 });
    await first.service.onApplicationShutdown();
    open.splice(0);
    store.down = false;
    const second = await recovery();
    expect(() => second.service.assertCaughtUp()).toThrow();
    await until(() => second.service.depth === 0);
    expect(await tokens.get('key:s')).toMatchObject({ spent: 7, reserved: 0 });
  });
});
