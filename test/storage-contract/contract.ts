import { randomUUID } from 'node:crypto';
import { AuditRecord } from '../../src/audit/domain/audit-record';
import { ParallelAccountingLedger } from '../../src/storage/ports/accounting-ledger';
import { ErrorCode, GatewayError } from '../../src/common/errors/gateway-error';
import { ScopeRateLimit } from '../../src/storage/ports/scope-rate-limit.repository';
import { StorageBackend } from '../../src/storage/ports/storage-backend';
import { VirtualKey } from '../../src/virtual-keys/domain/virtual-key';
import { ContractTarget } from './contract-target';

export function sampleKey(id: string, overrides: Partial<VirtualKey> = {}): VirtualKey {
  return {
    id,
    name: `key ${id}`,
    tokenHash: `hash-${id}-${randomUUID()}`,
    tokenPrefix: 'sk-ditto-abcd',
    enabled: true,
    expiresAt: null,
    tenantId: null,
    projectId: null,
    userId: null,
    models: [],
    allowedRoutes: [],
    limits: { rpm: null, tpm: null },
    cache: { ttlSecs: null },
    budget: { totalTokens: null, totalUsdMicros: null },
    route: null,
    metadata: {},
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...overrides,
  };
}

function audit(i: number, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: `a${String(i).padStart(6, '0')}`,
    ts: 1_700_000_000_000 + Math.floor(i / 3) * 1000,
    kind: i % 2 === 0 ? 'proxy' : 'admin.key.update',
    requestId: `req-${i}`,
    keyId: i % 5 === 0 ? 'k5' : 'k1',
    tenantId: i % 4 === 0 ? 't4' : null,
    payload: { i, nested: { model: 'gpt-4o-mini', usage: { total_tokens: i } } },
    ...overrides,
  };
}

async function expectConflict(promise: Promise<unknown>): Promise<void> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GatewayError);
  expect((error as GatewayError).code).toBe(ErrorCode.Conflict);
}

/** Resolves once `predicate` holds, polling every 10 ms; rejects after `ms`. Returns elapsed ms. */
async function within(ms: number, predicate: () => boolean): Promise<number> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

const HOUR = 3_600_000;
/** A fixed instant 1 s into an hour window, so window arithmetic is deterministic. */
const T0 = 1_700_000_000_000 - (1_700_000_000_000 % HOUR) + 1000;

/**
 * The storage contract: every backend must pass every case here. Adding a backend means adding one
 * `<name>.contract-spec.ts` that builds a ContractTarget.
 */
export function describeStorageContract(target: ContractTarget): void {
  describe(`storage contract: ${target.name}${target.variant ? ` (${target.variant})` : ''}`, () => {
    let store: { open(): Promise<StorageBackend>; teardown(): Promise<void> };
    const opened: StorageBackend[] = [];
    let a: StorageBackend;

    const open = async (): Promise<StorageBackend> => {
      const backend = await store.open();
      opened.push(backend);
      return backend;
    };

    beforeEach(async () => {
      store = await target.prepare();
      a = await open();
    });

    afterEach(async () => {
      for (const backend of opened.splice(0)) await backend.close();
      await store.teardown();
    });

    it('reports its name and answers ping', async () => {
      expect(a.name).toBe(target.name);
      await expect(a.ping()).resolves.toBeUndefined();
      expect(typeof a.details()).toBe('object');
    });

    describe('virtual keys', () => {
      it('round-trips every field and finds a key by token hash', async () => {
        const key = sampleKey('alpha', {
          name: null,
          enabled: false,
          expiresAt: 1_900_000_000_123,
          tenantId: 'acme',
          projectId: 'web',
          userId: 'u1',
          models: ['gpt-4o', 'claude-*'],
          allowedRoutes: ['/v1/chat/completions', '/v1/audio/*', '/v1/batches/**'],
          limits: { rpm: 60, tpm: 10_000 },
          cache: { ttlSecs: 3600 },
          budget: { totalTokens: 1_000_000, totalUsdMicros: 5_000_000 },
          route: 'openai',
          metadata: { team: 'search', tags: ['a', 'b'], nested: { n: 1 } },
        });
        await a.keys.create(key);
        expect(await a.keys.get('alpha')).toEqual(key);
        expect(await a.keys.findByTokenHash(key.tokenHash)).toEqual(key);
        expect(await a.keys.findByTokenHash('nope')).toBeNull();
        expect(await a.keys.get('nope')).toBeNull();
        expect(await a.keys.count()).toBe(1);
      });

      it('keeps the response cache setting apart per key: global (null), off (0) or a TTL', async () => {
        const settings = [null, 0, 3600];
        for (const [i, ttlSecs] of settings.entries()) await a.keys.create(sampleKey(`cache-${i}`, { cache: { ttlSecs } }));
        for (const [i, ttlSecs] of settings.entries()) {
          const stored = await a.keys.get(`cache-${i}`);
          expect(stored?.cache).toEqual({ ttlSecs });
          expect(await a.keys.findByTokenHash(stored!.tokenHash)).toEqual(stored);
        }
        expect((await a.keys.listAll()).map((k) => k.cache.ttlSecs)).toEqual(settings);
        // An update that leaves the field alone (a PATCH of other fields) keeps it, and one that sets it wins.
        const off = (await a.keys.get('cache-1'))!;
        expect(await a.keys.update({ ...off, enabled: false, limits: { rpm: 5, tpm: null }, updatedAt: off.updatedAt + 1 })).toBe(true);
        expect(await a.keys.get('cache-1')).toMatchObject({ enabled: false, cache: { ttlSecs: 0 } });
        const ttl = (await a.keys.get('cache-2'))!;
        expect(await a.keys.update({ ...ttl, cache: { ttlSecs: null } })).toBe(true);
        expect((await a.keys.get('cache-2'))?.cache).toEqual({ ttlSecs: null });
        expect(await a.keys.update({ ...ttl, cache: { ttlSecs: 86_400 } })).toBe(true);
        expect((await a.keys.get('cache-2'))?.cache).toEqual({ ttlSecs: 86_400 });
      });

      it('keeps allowed_routes per key, in order, and replaces them on update', async () => {
        await a.keys.create(sampleKey('routes-all'));
        await a.keys.create(sampleKey('routes-some', { allowedRoutes: ['/v1/embeddings', '/v1/chat/completions'] }));
        expect((await a.keys.get('routes-all'))?.allowedRoutes).toEqual([]);
        const some = (await a.keys.get('routes-some'))!;
        expect(some.allowedRoutes).toEqual(['/v1/embeddings', '/v1/chat/completions']);
        expect((await a.keys.findByTokenHash(some.tokenHash))?.allowedRoutes).toEqual(['/v1/embeddings', '/v1/chat/completions']);
        expect((await a.keys.listAll()).map((k) => [k.id, k.allowedRoutes])).toEqual([
          ['routes-all', []],
          ['routes-some', ['/v1/embeddings', '/v1/chat/completions']],
        ]);
        expect(await a.keys.update({ ...some, allowedRoutes: ['/v1/batches/**'] })).toBe(true);
        expect((await a.keys.get('routes-some'))?.allowedRoutes).toEqual(['/v1/batches/**']);
        expect(await a.keys.update({ ...some, allowedRoutes: [] })).toBe(true);
        expect((await a.keys.get('routes-some'))?.allowedRoutes).toEqual([]);
      });

      it('updates, rotates the hash, and deletes', async () => {
        const key = sampleKey('k1');
        await a.keys.create(key);
        const rotated = { ...key, tokenHash: 'new-hash', enabled: false, updatedAt: key.updatedAt + 5 };
        expect(await a.keys.update(rotated)).toBe(true);
        expect(await a.keys.findByTokenHash(key.tokenHash)).toBeNull();
        expect(await a.keys.findByTokenHash('new-hash')).toEqual(rotated);
        expect(await a.keys.update(sampleKey('missing'))).toBe(false);
        expect(await a.keys.delete('k1')).toBe(true);
        expect(await a.keys.delete('k1')).toBe(false);
        expect(await a.keys.get('k1')).toBeNull();
        expect(await a.keys.findByTokenHash('new-hash')).toBeNull();
      });

      it('refuses a duplicate id or a token hash owned by another key', async () => {
        const one = sampleKey('one');
        const two = sampleKey('two');
        await a.keys.create(one);
        await a.keys.create(two);
        await expectConflict(a.keys.create(sampleKey('one')));
        await expectConflict(a.keys.create(sampleKey('three', { tokenHash: one.tokenHash })));
        await expectConflict(a.keys.update({ ...two, tokenHash: one.tokenHash }));
        expect(await a.keys.findByTokenHash(one.tokenHash)).toEqual(one);
        expect(await a.keys.get('three')).toBeNull();
      });

      it('lists with filters, in id order', async () => {
        await a.keys.create(sampleKey('c', { tenantId: 't1', projectId: 'p1', userId: 'u1' }));
        await a.keys.create(sampleKey('a', { tenantId: 't1', projectId: 'p2', enabled: false }));
        await a.keys.create(sampleKey('b', { tenantId: 't2', userId: 'u1' }));
        const ids = async (filter: object) => (await a.keys.list(filter, 100, null)).items.map((k) => k.id);
        expect(await ids({})).toEqual(['a', 'b', 'c']);
        expect(await ids({ tenantId: 't1' })).toEqual(['a', 'c']);
        expect(await ids({ tenantId: 't1', projectId: 'p1' })).toEqual(['c']);
        expect(await ids({ userId: 'u1' })).toEqual(['b', 'c']);
        expect(await ids({ enabled: false })).toEqual(['a']);
        expect(await ids({ enabled: true, tenantId: 't1' })).toEqual(['c']);
        expect(await ids({ tenantId: 'none' })).toEqual([]);
      });

      it('pages through every key exactly once while keys are being added', async () => {
        const initial = Array.from({ length: 25 }, (_, i) => `key-${String(i * 2).padStart(3, '0')}`);
        for (const id of initial) await a.keys.create(sampleKey(id, { tenantId: 'acme' }));
        const seen: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await a.keys.list({ tenantId: 'acme' }, 4, cursor);
          expect(page.items.length).toBeLessThanOrEqual(4);
          seen.push(...page.items.map((k) => k.id));
          cursor = page.nextCursor;
          // Keys added mid-way, before and after the cursor position, must not disturb the walk.
          await a.keys.create(sampleKey(`key-${String(pages * 2 + 1).padStart(3, '0')}`, { tenantId: 'acme' }));
          await a.keys.create(sampleKey(`other-${pages}`, { tenantId: 'other' }));
          pages++;
        } while (cursor !== null && pages < 50);
        expect(cursor).toBeNull();
        expect(new Set(seen).size).toBe(seen.length);
        for (const id of initial) expect(seen).toContain(id);
        expect(seen).toEqual([...seen].sort());
        expect(seen.every((id) => id.startsWith('key-'))).toBe(true);
      });

      it('seeds an empty store once and never over a store that holds keys', async () => {
        expect(await a.keys.seedIfEmpty([sampleKey('s1'), sampleKey('s2')])).toBe(2);
        expect((await a.keys.listAll()).map((k) => k.id).sort()).toEqual(['s1', 's2']);
        expect(await a.keys.seedIfEmpty([sampleKey('s3')])).toBe(0);
        expect(await a.keys.get('s3')).toBeNull();
        expect(await a.keys.count()).toBe(2);
      });
    });

    describe('ledgers', () => {
      it('reserves, commits the actual amount and releases the rest', async () => {
        await a.budgets.setLimit('key:k1', 100, null, T0);
        expect(await a.budgets.reserve('r1', ['key:k1', 'tenant:t'], 40, T0)).toEqual({ ok: true });
        expect(await a.budgets.get('key:k1', T0)).toMatchObject({ limit: 100, spent: 0, reserved: 40 });
        // A scope without a limit is metered, never refused.
        expect(await a.budgets.get('tenant:t', T0)).toMatchObject({ limit: null, spent: 0, reserved: 40 });
        expect(await a.budgets.commit('r1', 25, T0)).toBe(true);
        expect(await a.budgets.get('key:k1', T0)).toMatchObject({ spent: 25, reserved: 0 });
        expect(await a.budgets.get('tenant:t', T0)).toMatchObject({ spent: 25, reserved: 0 });
        expect(await a.budgets.reserve('r2', ['key:k1'], 50, T0)).toEqual({ ok: true });
        expect(await a.budgets.release('r2', T0)).toBe(true);
        expect(await a.budgets.get('key:k1', T0)).toMatchObject({ spent: 25, reserved: 0 });
      });

      it('refuses over the limit on all scopes or none, naming the scope', async () => {
        await a.budgets.setLimit('project:t/p', 50, null, T0);
        expect(await a.budgets.reserve('r0', ['project:t/p'], 30, T0)).toEqual({ ok: true });
        const refused = await a.budgets.reserve('r1', ['key:k', 'project:t/p'], 21, T0);
        expect(refused).toEqual({ ok: false, scope: 'project:t/p', limit: 50, spent: 0, reserved: 30 });
        const untouched = await a.budgets.get('key:k', T0);
        expect(untouched === null || untouched.reserved === 0).toBe(true);
        expect(await a.budgets.reserve('r2', ['key:k', 'project:t/p'], 20, T0)).toEqual({ ok: true });
        expect(await a.budgets.get('project:t/p', T0)).toMatchObject({ reserved: 50 });
        expect(await a.budgets.listReservations(Number.MAX_SAFE_INTEGER)).toHaveLength(2);
      });

      it('is idempotent per reservation and settles exactly once', async () => {
        await a.budgets.setLimit('key:k', 100, null, T0);
        expect(await a.budgets.reserve('r', ['key:k'], 30, T0)).toEqual({ ok: true });
        expect(await a.budgets.reserve('r', ['key:k'], 30, T0)).toEqual({ ok: true });
        expect(await a.budgets.get('key:k', T0)).toMatchObject({ reserved: 30 });
        expect(await a.budgets.commit('r', 10, T0)).toBe(true);
        expect(await a.budgets.commit('r', 10, T0)).toBe(false);
        expect(await a.budgets.release('r', T0)).toBe(false);
        expect(await a.budgets.commit('never', 10, T0)).toBe(false);
        expect(await a.budgets.get('key:k', T0)).toMatchObject({ spent: 10, reserved: 0 });
      });

      it('reaps only reservations older than the cutoff', async () => {
        await a.budgets.reserve('old1', ['key:k'], 5, T0);
        await a.budgets.reserve('old2', ['key:k'], 5, T0 + 10);
        await a.budgets.reserve('new', ['key:k'], 5, T0 + 1000);
        expect((await a.budgets.listReservations(T0 + 500)).map((r) => r.id)).toEqual(['old1', 'old2']);
        expect(await a.budgets.reap(T0 + 500)).toBe(2);
        expect(await a.budgets.get('key:k', T0 + 1000)).toMatchObject({ reserved: 5, spent: 0 });
        expect(await a.budgets.commit('old1', 5, T0 + 1000)).toBe(false);
        expect(await a.budgets.commit('new', 5, T0 + 1000)).toBe(true);
        expect(await a.budgets.reap(Number.MAX_SAFE_INTEGER)).toBe(0);
      });

      it('sets limits without losing spend, resets spend, and lists scopes by prefix', async () => {
        expect(await a.budgets.get('key:x', T0)).toBeNull();
        expect(await a.budgets.resetSpent('key:x', T0)).toBeNull();
        await a.budgets.reserve('r', ['key:x'], 70, T0);
        await a.budgets.commit('r', 70, T0);
        expect(await a.budgets.setLimit('key:x', 60, null, T0)).toMatchObject({ scope: 'key:x', limit: 60, spent: 70 });
        expect(await a.budgets.reserve('r2', ['key:x'], 1, T0)).toMatchObject({ ok: false, scope: 'key:x' });
        expect(await a.budgets.resetSpent('key:x', T0)).toMatchObject({ limit: 60, spent: 0 });
        expect(await a.budgets.setLimit('key:x', null, null, T0)).toMatchObject({ limit: null, spent: 0 });
        for (const s of ['tenant:b', 'tenant:a', 'user:a/1', 'tenant:c']) await a.budgets.setLimit(s, 10, null, T0);
        const first = await a.budgets.list('tenant:', 2, null, T0);
        expect(first.items.map((s) => s.scope)).toEqual(['tenant:a', 'tenant:b']);
        const second = await a.budgets.list('tenant:', 2, first.nextCursor, T0);
        expect(second.items.map((s) => s.scope)).toEqual(['tenant:c']);
        expect(second.nextCursor).toBeNull();
        expect((await a.budgets.list(null, 100, null, T0)).items).toHaveLength(5);
      });

      it('rolls a periodic window over without any job', async () => {
        const scope = await a.budgets.setLimit('key:p', 100, HOUR, T0);
        expect(scope.windowStart).toBe(T0 - 1000);
        await a.budgets.reserve('r1', ['key:p'], 60, T0);
        await a.budgets.commit('r1', 60, T0);
        expect(await a.budgets.reserve('r2', ['key:p'], 60, T0 + 1000)).toMatchObject({ ok: false, scope: 'key:p' });
        const nextWindow = T0 - 1000 + HOUR;
        expect(await a.budgets.get('key:p', nextWindow)).toMatchObject({ spent: 0, windowStart: nextWindow });
        expect(await a.budgets.reserve('r3', ['key:p'], 60, nextWindow + 5)).toEqual({ ok: true });
        expect(await a.budgets.commit('r3', 55, nextWindow + 6)).toBe(true);
        expect(await a.budgets.get('key:p', nextWindow + 7)).toMatchObject({ spent: 55, reserved: 0, limit: 100 });
      });

      it('keeps the token and cost ledgers apart', async () => {
        await a.budgets.setLimit('key:k', 10, null, T0);
        await a.costs.setLimit('key:k', 1_000_000, null, T0);
        expect(await a.costs.reserve('r', ['key:k'], 500_000, T0)).toEqual({ ok: true });
        expect(await a.budgets.get('key:k', T0)).toMatchObject({ limit: 10, reserved: 0 });
        expect(await a.budgets.commit('r', 1, T0)).toBe(false);
        expect(await a.costs.commit('r', 123_456, T0)).toBe(true);
        expect(await a.costs.get('key:k', T0)).toMatchObject({ spent: 123_456, reserved: 0 });
      });

      it('reserves and settles both ledgers together, all or none (AccountingLedger)', async () => {
        const both = a.accounting ?? new ParallelAccountingLedger(a.budgets, a.costs);
        await a.budgets.setLimit('key:both', 100, null, T0);
        await a.costs.setLimit('tenant:both', 1000, null, T0);
        const scopes = ['key:both', 'tenant:both'];
        expect(await both.reserve('b1', scopes, { tokens: 60, usdMicros: 600 }, T0)).toEqual({ ok: true });
        // The cost ledger refuses: nothing stays reserved on the token ledger either.
        expect(await both.reserve('b2', scopes, { tokens: 10, usdMicros: 500 }, T0)).toEqual({
          ok: false, ledger: 'usd_micros', scope: 'tenant:both', limit: 1000, spent: 0, reserved: 600,
        });
        expect(await both.reserve('b3', scopes, { tokens: 50, usdMicros: 1 }, T0)).toMatchObject({ ok: false, ledger: 'tokens', scope: 'key:both' });
        expect(await a.budgets.get('key:both', T0)).toMatchObject({ reserved: 60, spent: 0 });
        expect(await a.costs.get('tenant:both', T0)).toMatchObject({ reserved: 600, spent: 0 });
        expect(await both.settle('b1', { tokens: 42, usdMicros: 420 }, T0)).toEqual({ tokens: true, usdMicros: true });
        expect(await both.settle('b1', { tokens: 42, usdMicros: 420 }, T0)).toEqual({ tokens: false, usdMicros: false });
        expect(await a.budgets.get('key:both', T0)).toMatchObject({ reserved: 0, spent: 42 });
        expect(await a.costs.get('tenant:both', T0)).toMatchObject({ reserved: 0, spent: 420 });
        expect(await both.reserve('b4', scopes, { tokens: 5, usdMicros: 5 }, T0)).toEqual({ ok: true });
        expect(await both.settle('b4', null, T0)).toEqual({ tokens: true, usdMicros: true });
        expect(await a.costs.get('tenant:both', T0)).toMatchObject({ reserved: 0, spent: 420 });
        // A refused id left no trace in either ledger: tried again once it fits, it is charged on both.
        expect(await both.reserve('b2', scopes, { tokens: 10, usdMicros: 500 }, T0)).toEqual({ ok: true });
        expect(await a.budgets.get('key:both', T0)).toMatchObject({ reserved: 10 });
        expect(await a.costs.get('tenant:both', T0)).toMatchObject({ reserved: 500 });
        expect(await both.settle('b2', null, T0)).toEqual({ tokens: true, usdMicros: true });
      });

      // A journaled settle is replayed after the store comes back (docs/budgets.md, "Store faults"): the
      // original may have been applied already (its answer lost), or may race the replay from another
      // connection. Either way the reservation is charged once; a release of an id never reserved (a
      // reserve whose answer was lost and that never happened) changes nothing.
      it('settles each reservation id once through AccountingLedger, however often and from wherever it is replayed', async () => {
        const both = a.accounting ?? new ParallelAccountingLedger(a.budgets, a.costs);
        const b = target.shared ? await open() : a;
        const other = b.accounting ?? new ParallelAccountingLedger(b.budgets, b.costs);
        const scopes = ['key:replay', 'tenant:replay'];
        await a.budgets.setLimit('key:replay', 1000, null, T0);
        expect(await both.reserve('p1', scopes, { tokens: 50, usdMicros: 500 }, T0)).toEqual({ ok: true });
        expect(await both.reserve('p2', scopes, { tokens: 40, usdMicros: 400 }, T0)).toEqual({ ok: true });
        expect(await both.settle('p1', { tokens: 30, usdMicros: 300 }, T0)).toEqual({ tokens: true, usdMicros: true });
        // Replayed: already settled, nothing changes (a replayed release neither).
        expect(await other.settle('p1', { tokens: 30, usdMicros: 300 }, T0)).toEqual({ tokens: false, usdMicros: false });
        expect(await other.settle('p1', null, T0)).toEqual({ tokens: false, usdMicros: false });
        expect(await both.settle('never-reserved', null, T0)).toEqual({ tokens: false, usdMicros: false });
        // The original and its replay at once, on two connections: one of them settles it.
        const raced = await Promise.all([both.settle('p2', { tokens: 20, usdMicros: 200 }, T0), other.settle('p2', { tokens: 20, usdMicros: 200 }, T0)]);
        expect(raced.filter((r) => r.tokens)).toHaveLength(1);
        expect(raced.filter((r) => r.usdMicros)).toHaveLength(1);
        for (const scope of scopes) {
          expect(await a.budgets.get(scope, T0)).toMatchObject({ spent: 50, reserved: 0 });
          expect(await b.costs.get(scope, T0)).toMatchObject({ spent: 500, reserved: 0 });
        }
        expect(await a.budgets.listReservations(Number.MAX_SAFE_INTEGER)).toEqual([]);
      });

      // SQLite runs the calls of one event-loop turn as one transaction: a refused reserve must roll back
      // its own token reservation and nothing of its neighbours'.
      it('keeps concurrent AccountingLedger reserves apart when some are refused', async () => {
        const both = a.accounting ?? new ParallelAccountingLedger(a.budgets, a.costs);
        await a.costs.setLimit('key:mix', 1000, null, T0);
        const scopes = ['key:mix', 'tenant:mix'];
        // Even: 100 micros (10 of the 15 fit); odd: 2000 micros (never fits).
        const ids = Array.from({ length: 30 }, (_, i) => `mix${i}`);
        const results = await Promise.all(ids.map((id, i) => both.reserve(id, scopes, { tokens: 10, usdMicros: i % 2 ? 2000 : 100 }, T0)));
        const admitted = ids.filter((_, i) => results[i].ok);
        expect(admitted).toHaveLength(10);
        expect(admitted.every((id) => Number(id.slice(3)) % 2 === 0)).toBe(true);
        expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.ledger === 'usd_micros' && r.scope === 'key:mix')).toBe(true);
        expect(await a.budgets.get('tenant:mix', T0)).toMatchObject({ reserved: 100, spent: 0 });
        expect(await a.costs.get('key:mix', T0)).toMatchObject({ reserved: 1000, spent: 0 });
        const settled = await Promise.all(admitted.map((id) => both.settle(id, { tokens: 7, usdMicros: 70 }, T0)));
        expect(settled).toEqual(admitted.map(() => ({ tokens: true, usdMicros: true })));
        expect(await a.budgets.get('tenant:mix', T0)).toMatchObject({ reserved: 0, spent: 70 });
        expect(await a.costs.get('key:mix', T0)).toMatchObject({ reserved: 0, spent: 700 });
        expect(await a.budgets.listReservations(T0 + 1)).toEqual([]);
      });

      it('writes scopes and reservations verbatim for migration', async () => {
        const row = { scope: 'tenant:m', limit: 500, spent: 120, reserved: 30, periodMs: null, windowStart: 0, updatedAt: T0 };
        await a.budgets.putScope(row);
        await a.budgets.putReservation({ id: 'm1', scopes: ['tenant:m'], amount: 30, createdAt: T0 });
        await a.budgets.putReservation({ id: 'm1', scopes: ['tenant:m'], amount: 30, createdAt: T0 });
        expect(await a.budgets.get('tenant:m', T0)).toEqual(row);
        expect(await a.budgets.listReservations(T0 + 1)).toEqual([{ id: 'm1', scopes: ['tenant:m'], amount: 30, createdAt: T0 }]);
        expect(await a.budgets.release('m1', T0)).toBe(true);
        expect(await a.budgets.get('tenant:m', T0)).toMatchObject({ spent: 120, reserved: 0 });
      });

      it('admits exactly limit/amount of 200 concurrent reservations, and settles each once', async () => {
        const b = target.shared ? await open() : a;
        await a.budgets.setLimit('key:hot', 1000, null);
        const ids = Array.from({ length: 200 }, () => randomUUID());
        const results = await Promise.all(
          ids.map((id, i) => (i % 2 === 0 ? a : b).budgets.reserve(id, ['tenant:hot', 'key:hot'], 10)),
        );
        const admitted = ids.filter((_, i) => results[i].ok);
        expect(admitted).toHaveLength(100);
        const mid = (await b.budgets.get('key:hot'))!;
        expect(mid.spent + mid.reserved).toBeLessThanOrEqual(1000);
        expect(mid.reserved).toBe(1000);
        // Both instances try to settle every reservation: exactly one settle per id wins.
        const settled = await Promise.all(
          admitted.flatMap((id) => [a.budgets.commit(id, 7), b.budgets.commit(id, 7)]),
        );
        expect(settled.filter(Boolean)).toHaveLength(100);
        expect(await a.budgets.get('key:hot')).toMatchObject({ spent: 700, reserved: 0 });
        expect(await b.budgets.get('tenant:hot')).toMatchObject({ spent: 700, reserved: 0 });
      });
    });

    describe('scope rate limits', () => {
      const limit = (scope: string, rpm: number | null, tpm: number | null, updatedAt = T0): ScopeRateLimit => ({ scope, rpm, tpm, updatedAt });

      it('puts, gets, replaces and deletes the limits of a scope', async () => {
        expect(await a.rateLimits.get('tenant:acme')).toBeNull();
        await a.rateLimits.put(limit('tenant:acme', 600, 1_000_000));
        expect(await a.rateLimits.get('tenant:acme')).toEqual(limit('tenant:acme', 600, 1_000_000));
        // A put replaces every field, nulls included (null = no limit of that kind).
        await a.rateLimits.put(limit('tenant:acme', null, 2_000_000, T0 + 5));
        expect(await a.rateLimits.get('tenant:acme')).toEqual(limit('tenant:acme', null, 2_000_000, T0 + 5));
        await a.rateLimits.put(limit('key:k1', 60, null));
        expect(await a.rateLimits.get('key:k1')).toEqual(limit('key:k1', 60, null));
        expect(await a.rateLimits.get('tenant:acme')).toMatchObject({ rpm: null, tpm: 2_000_000 });
        expect(await a.rateLimits.delete('tenant:acme')).toBe(true);
        expect(await a.rateLimits.delete('tenant:acme')).toBe(false);
        expect(await a.rateLimits.delete('never')).toBe(false);
        expect(await a.rateLimits.get('tenant:acme')).toBeNull();
        expect(await a.rateLimits.get('key:k1')).toEqual(limit('key:k1', 60, null));
      });

      it('lists in scope order, paging every scope exactly once', async () => {
        expect(await a.rateLimits.list(10, null)).toEqual({ items: [], nextCursor: null });
        // Byte order: upper case before lower case, shorter prefix first.
        const scopes = ['user:acme/u1', 'key:b', 'tenant:acme', 'project:acme/web', 'key:a', 'tenant:Acme', 'key:a-1'];
        const stored = scopes.map((scope, i) => limit(scope, i + 1, i % 2 ? null : 1000 * (i + 1)));
        for (const l of stored) await a.rateLimits.put(l);
        const seen: ScopeRateLimit[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await a.rateLimits.list(3, cursor);
          expect(page.items.length).toBeLessThanOrEqual(3);
          seen.push(...page.items);
          cursor = page.nextCursor;
          pages++;
        } while (cursor !== null && pages < 10);
        expect(cursor).toBeNull();
        expect(pages).toBe(3);
        const sorted = ['key:a', 'key:a-1', 'key:b', 'project:acme/web', 'tenant:Acme', 'tenant:acme', 'user:acme/u1'];
        expect(seen).toEqual(sorted.map((scope) => stored.find((l) => l.scope === scope)));
        // A deleted scope is gone from the list; a page that ends exactly at the last scope has no next cursor.
        await a.rateLimits.delete('key:a');
        const all = await a.rateLimits.list(scopes.length - 1, null);
        expect(all.items.map((l) => l.scope)).toEqual(sorted.filter((s) => s !== 'key:a'));
        expect(all.nextCursor).toBeNull();
      });

      it('refuses a cursor it did not issue', async () => {
        await a.rateLimits.put(limit('key:x', 1, 1));
        for (const cursor of ['not-a-cursor', Buffer.from('[1,2]').toString('base64url')]) {
          const error = await a.rateLimits.list(10, cursor).then(
            () => null,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(GatewayError);
          expect(error).toMatchObject({ code: ErrorCode.InvalidRequest, param: 'cursor' });
        }
      });
    });

    describe('audit log', () => {
      const rows = Array.from({ length: 50 }, (_, i) => audit(i));

      it('appends in batches, skips ids it already holds, and counts', async () => {
        await a.audit.append(rows.slice(0, 30));
        await a.audit.append(rows.slice(20));
        expect(await a.audit.count()).toBe(50);
        const page = await a.audit.query({}, 1, null);
        expect(page.items[0]).toEqual(rows[49]);
      });

      it('queries newest first with filters, and pages every row exactly once', async () => {
        await a.audit.append(rows);
        const collect = async (query: object, limit: number) => {
          const out: AuditRecord[] = [];
          let cursor: string | null = null;
          do {
            const page = await a.audit.query(query, limit, cursor);
            expect(page.items.length).toBeLessThanOrEqual(limit);
            out.push(...page.items);
            cursor = page.nextCursor;
          } while (cursor !== null);
          return out;
        };
        const all = await collect({}, 7);
        expect(all.map((r) => r.id)).toEqual([...rows].reverse().map((r) => r.id));
        const expectIds = async (query: object, predicate: (r: AuditRecord) => boolean) =>
          expect((await collect(query, 4)).map((r) => r.id)).toEqual(
            rows.filter(predicate).reverse().map((r) => r.id),
          );
        await expectIds({ kind: 'proxy' }, (r) => r.kind === 'proxy');
        await expectIds({ kind: 'admin.*' }, (r) => r.kind.startsWith('admin.'));
        await expectIds({ kind: 'admin.key.*' }, (r) => r.kind.startsWith('admin.key.'));
        await expectIds({ kind: 'admin' }, () => false);
        await expectIds({ keyId: 'k5' }, (r) => r.keyId === 'k5');
        await expectIds({ tenantId: 't4' }, (r) => r.tenantId === 't4');
        const since = rows[10].ts;
        const until = rows[40].ts;
        await expectIds({ since, until }, (r) => r.ts >= since && r.ts < until);
        await expectIds({ since, kind: 'proxy', keyId: 'k1' }, (r) => r.ts >= since && r.kind === 'proxy' && r.keyId === 'k1');
      });

      it('scans oldest first in bounded batches', async () => {
        await a.audit.append([...rows].reverse());
        const batches: AuditRecord[][] = [];
        for await (const batch of a.audit.scan({ since: rows[3].ts }, 8)) batches.push(batch);
        expect(batches.every((b) => b.length > 0 && b.length <= 8)).toBe(true);
        expect(batches.flat().map((r) => r.id)).toEqual(rows.filter((r) => r.ts >= rows[3].ts).map((r) => r.id));
      });

      it('deletes rows older than a cutoff in bounded batches', async () => {
        await a.audit.append(rows);
        const cutoff = rows[30].ts;
        const older = rows.filter((r) => r.ts < cutoff).length;
        expect(await a.audit.deleteOlderThan(cutoff, 7)).toBe(7);
        let total = 7;
        for (let n = await a.audit.deleteOlderThan(cutoff, 7); n > 0; n = await a.audit.deleteOlderThan(cutoff, 7)) total += n;
        expect(total).toBe(older);
        expect(await a.audit.count()).toBe(50 - older);
        const remaining = (await a.audit.query({}, 100, null)).items;
        expect(remaining.every((r) => r.ts >= cutoff)).toBe(true);
      });

      it('expires by its own means (partitions, TTL) and batches together: exactly the rows older than the cutoff go', async () => {
        // Rows around now, as the retention job sees them: after prepareRetention a store may hold them in
        // units (PostgreSQL time partitions) that dropExpired removes whole; deleteOlderThan does the rest.
        const now = Date.now();
        const recent = Array.from({ length: 60 }, (_, i) => audit(1000 + i, { ts: now + i * 250 }));
        const older = rows.slice(0, 10); // long before now: wherever the store keeps rows no unit covers
        await a.audit.prepareRetention(4_000, now, 20_000);
        await a.audit.append([...older, ...recent]);
        expect(await a.audit.oldestTs()).toBe(older[0].ts);
        const cutoff = now + 10_000;
        let removed = await a.audit.dropExpired(cutoff);
        for (let n = await a.audit.deleteOlderThan(cutoff, 7); n > 0; n = await a.audit.deleteOlderThan(cutoff, 7)) removed += n;
        const kept = recent.filter((r) => r.ts >= cutoff);
        expect(removed).toBe(70 - kept.length);
        expect(await a.audit.count()).toBe(kept.length);
        expect(await a.audit.oldestTs()).toBe(kept[0].ts);
        while (await a.audit.reclaimStep());
        expect((await a.audit.query({}, 100, null)).items.map((r) => r.id)).toEqual([...kept].reverse().map((r) => r.id));
        // Preparing again (every run does) changes nothing that is stored.
        await a.audit.prepareRetention(4_000, now + 5_000, 20_000);
        expect(await a.audit.count()).toBe(kept.length);
        expect(await a.audit.dropExpired(now)).toBe(0);
      });

      it('reports no oldest row when empty', async () => {
        expect(await a.audit.oldestTs()).toBeNull();
        expect(await a.audit.approximateCount()).toBeGreaterThanOrEqual(0);
      });
    });

    describe('change feed', () => {
      it(`delivers a change to ${target.shared ? 'another instance' : 'its listeners'} within 1 s`, async () => {
        const b = target.shared ? await open() : a;
        const received: string[] = [];
        const unsubscribe = b.changes.subscribe((e) => received.push(`${e.entity}/${e.id}`));
        // Give subscription-based feeds (pub/sub, LISTEN) a moment to be established.
        await new Promise((r) => setTimeout(r, 100));
        await a.changes.publish({ entity: 'virtual_key', id: 'k-1' });
        const elapsed = await within(1000, () => received.includes('virtual_key/k-1'));
        expect(elapsed).toBeLessThan(1000);
        unsubscribe();
        await a.changes.publish({ entity: 'virtual_key', id: 'k-2' });
        await new Promise((r) => setTimeout(r, Math.max(300, 0)));
        expect(received).not.toContain('virtual_key/k-2');
      });
    });

    if (target.shared) {
      it('shares keys, ledgers, rate limits and audit between instances on one store', async () => {
        const b = await open();
        const key = sampleKey('shared');
        await a.keys.create(key);
        expect(await b.keys.findByTokenHash(key.tokenHash)).toEqual(key);
        await a.budgets.setLimit('key:shared', 10, null, T0);
        expect(await b.budgets.reserve('r', ['key:shared'], 11, T0)).toMatchObject({ ok: false });
        await b.audit.append([audit(1)]);
        expect(await a.audit.count()).toBe(1);
        await a.rateLimits.put({ scope: 'key:shared', rpm: 10, tpm: null, updatedAt: T0 });
        expect(await b.rateLimits.get('key:shared')).toEqual({ scope: 'key:shared', rpm: 10, tpm: null, updatedAt: T0 });
        expect(await b.rateLimits.delete('key:shared')).toBe(true);
        expect(await a.rateLimits.get('key:shared')).toBeNull();
      });
    }

    if (target.persistent) {
      it('keeps its data across close and reopen', async () => {
        const key = sampleKey('durable', { metadata: { x: 1 }, cache: { ttlSecs: 0 } });
        await a.keys.create(key);
        await a.budgets.setLimit('key:durable', 100, null, T0);
        await a.budgets.reserve('r', ['key:durable'], 10, T0);
        await a.budgets.commit('r', 9, T0);
        await a.audit.append([audit(7)]);
        await a.rateLimits.put({ scope: 'tenant:durable', rpm: 100, tpm: 5000, updatedAt: T0 });
        await a.close();
        const reopened = await open();
        expect(await reopened.keys.get('durable')).toEqual(key);
        if (target.persistsKeysOnly) return;
        expect(await reopened.budgets.get('key:durable', T0)).toMatchObject({ limit: 100, spent: 9, reserved: 0 });
        expect(await reopened.audit.count()).toBe(1);
        expect(await reopened.rateLimits.get('tenant:durable')).toEqual({ scope: 'tenant:durable', rpm: 100, tpm: 5000, updatedAt: T0 });
      });
    }
  });
}
