import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, RunningGateway, admin, adminGet, startGateway, within } from './harness';
import { ReplicaPair, startReplicaPair } from './replica-pair';

const PRICES = { 'gpt-4o-mini': { input_per_mtok_usd: 2, output_per_mtok_usd: 8, cached_input_per_mtok_usd: 1 } };

interface Answer {
  status: number;
  cache: string | null;
  headers: Headers;
  text: string;
}

async function post(gateway: RunningGateway, token: string, pathname: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${gateway.url}${pathname}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, cache: response.headers.get('x-ditto-cache'), headers: response.headers, text: await response.text() };
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: 12, ...extra });

async function createKey(gateway: RunningGateway, body: Record<string, unknown>): Promise<{ id: string; token: string }> {
  const created = await admin(gateway, 'POST', '/admin/keys', body);
  expect(created.status).toBe(201);
  return { id: created.body.id as string, token: created.body.token as string };
}

/** One gateway (with its own mock upstream and temp dir) on `env`; SQLITE_PATH, when given, is a file name in the temp dir. */
async function startOne(env: Record<string, string>): Promise<{ gateway: RunningGateway; upstream: MockUpstream; close(): Promise<void> }> {
  const upstream = await startMockUpstream();
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-cache-'));
  const file = path.join(dir, 'gateway.json');
  writeFileSync(file, JSON.stringify({ backends: [{ name: 'mock', base_url: upstream.url }], pricing: PRICES }));
  const sqlite = env.SQLITE_PATH ? { SQLITE_PATH: path.join(dir, env.SQLITE_PATH) } : {};
  const gateway = await startGateway({ ...env, ...sqlite, GATEWAY_CONFIG: file, ADMIN_TOKEN, AUDIT_FLUSH_MS: '20' });
  return {
    gateway,
    upstream,
    close: async () => {
      await gateway.close();
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const upstreamCalls = (upstream: MockUpstream, pathname = '/v1/chat/completions') => upstream.requests.filter((r) => r.url === pathname).length;

describe('proxy response cache across two replicas on redis (e2e)', () => {
  let pair: ReplicaPair;
  let upstream: MockUpstream;
  let a: RunningGateway;
  let b: RunningGateway;

  beforeAll(async () => {
    pair = await startReplicaPair('redis', { gateway: { pricing: PRICES }, env: { PROXY_CACHE_TTL_SECS: '60' } });
    ({ a, b, upstream } = pair);
  });

  afterAll(() => pair?.close());

  it('serves a repeated request from the cache: the upstream sees one call, the hit is audited and free', async () => {
    const key = await createKey(a, { name: 'cached', tenant_id: 'acme' });
    const before = upstreamCalls(upstream);
    const first = await post(a, key.token, '/v1/chat/completions', chat('What is a cache?'));
    expect(first).toMatchObject({ status: 200, cache: 'miss' });
    const second = await post(a, key.token, '/v1/chat/completions', chat('What is a cache?'));
    expect(second).toMatchObject({ status: 200, cache: 'hit' });
    expect(second.text).toBe(first.text);
    expect(second.headers.get('x-ditto-request-id')).not.toBe(first.headers.get('x-ditto-request-id'));
    expect(upstreamCalls(upstream)).toBe(before + 1);
    // Key order in the body does not matter; a different value does.
    const reordered = await post(a, key.token, '/v1/chat/completions', { max_tokens: 12, messages: [{ content: 'What is a cache?', role: 'user' }], model: 'gpt-4o-mini' });
    expect(reordered.cache).toBe('hit');
    const other = await post(a, key.token, '/v1/chat/completions', chat('What is a cache?', { max_tokens: 13 }));
    expect(other.cache).toBe('miss');

    // Charged for the two misses only; all four audited, the two hits as cached.
    const spent = JSON.parse(first.text).usage.total_tokens + JSON.parse(other.text).usage.total_tokens;
    await within(3000, async () => {
      const rows = (await adminGet(a, `/admin/audit?key_id=${key.id}&kind=proxy`)).body.items as any[];
      return rows.length === 4;
    });
    const rows = (await adminGet(a, `/admin/audit?key_id=${key.id}&kind=proxy`)).body.items as any[];
    const hits = rows.filter((r) => r.payload.cached === true);
    expect(hits).toHaveLength(2);
    expect(hits.every((r) => r.payload.charged === null || r.payload.charged.tokens === 0)).toBe(true);
    const budget = (await adminGet(a, `/admin/budgets/${encodeURIComponent(`key:${key.id}`)}`)).body;
    expect(budget).toMatchObject({ spent_tokens: spent, reserved_tokens: 0 });
  });

  it('never serves another tenant, but serves another key of the same tenant', async () => {
    const acme1 = await createKey(a, { tenant_id: 'acme' });
    const acme2 = await createKey(a, { tenant_id: 'acme' });
    const globex = await createKey(a, { tenant_id: 'globex' });
    const loner = await createKey(a, {});
    const body = chat('Tenant separation, please.');
    expect((await post(a, acme1.token, '/v1/chat/completions', body)).cache).toBe('miss');
    expect((await post(a, acme2.token, '/v1/chat/completions', body)).cache).toBe('hit');
    expect((await post(a, globex.token, '/v1/chat/completions', body)).cache).toBe('miss');
    expect((await post(a, loner.token, '/v1/chat/completions', body)).cache).toBe('miss');
  });

  it('bypasses the cache on request', async () => {
    const key = await createKey(a, { tenant_id: 'bypass' });
    const body = chat('Bypass me.');
    await post(a, key.token, '/v1/chat/completions', body);
    const before = upstreamCalls(upstream);
    expect((await post(a, key.token, '/v1/chat/completions', body, { 'x-ditto-cache-bypass': '1' })).cache).toBe('bypass');
    expect((await post(a, key.token, '/v1/chat/completions', body, { 'cache-control': 'no-cache' })).cache).toBe('bypass');
    expect((await post(a, key.token, '/v1/chat/completions', body, { 'cache-control': 'no-store' })).cache).toBe('bypass');
    expect(upstreamCalls(upstream)).toBe(before + 3);
    expect((await post(a, key.token, '/v1/chat/completions', body)).cache).toBe('hit');
  });

  it('shares entries between replicas (L2): replica B hits what replica A stored', async () => {
    const key = await createKey(a, { tenant_id: 'shared' });
    const body = chat('Shared between replicas.');
    expect((await post(a, key.token, '/v1/chat/completions', body)).cache).toBe('miss');
    const before = upstreamCalls(upstream);
    const onB = await within(2000, async () => (await post(b, key.token, '/v1/chat/completions', body)).cache === 'hit');
    expect(onB).toBeLessThan(2000);
    expect(upstreamCalls(upstream)).toBe(before);
  });

  it('caches embeddings and completions, never streams or requests with a query string', async () => {
    const key = await createKey(a, { tenant_id: 'kinds' });
    const embed = { model: 'text-embedding-3-small', input: 'cache me' };
    expect((await post(a, key.token, '/v1/embeddings', embed)).cache).toBe('miss');
    expect((await post(a, key.token, '/v1/embeddings', embed)).cache).toBe('hit');
    const complete = { model: 'gpt-4o-mini', prompt: 'cache me too', max_tokens: 5 };
    expect((await post(a, key.token, '/v1/completions', complete)).cache).toBe('miss');
    expect((await post(a, key.token, '/v1/completions', complete)).cache).toBe('hit');
    const withQuery = chat('Query strings are not part of the key, so such requests are not cached.');
    expect((await post(a, key.token, '/v1/chat/completions?api-version=1', withQuery)).cache).toBeNull();
    expect((await post(a, key.token, '/v1/chat/completions?api-version=1', withQuery)).cache).toBeNull();
    const stream = chat('Stream me.', { stream: true });
    const first = await post(a, key.token, '/v1/chat/completions', stream);
    expect(first.status).toBe(200);
    expect(first.cache).not.toBe('hit');
    expect((await post(a, key.token, '/v1/chat/completions', stream)).cache).not.toBe('hit');
  });

  it('purges by key id, by model and everything, on every replica', async () => {
    const one = await createKey(a, { tenant_id: 'purge-1' });
    const two = await createKey(a, { tenant_id: 'purge-2' });
    const body = chat('Purge me.');
    for (const key of [one, two]) {
      await post(a, key.token, '/v1/chat/completions', body);
      // Warm replica B's own in-process copy too.
      await within(2000, async () => (await post(b, key.token, '/v1/chat/completions', body)).cache === 'hit');
    }
    const purged = await admin(a, 'POST', '/admin/proxy-cache/purge', { key_id: one.id });
    expect(purged.status).toBe(200);
    expect(purged.body.purged).toBeGreaterThanOrEqual(1);
    await within(2000, async () => (await post(b, one.token, '/v1/chat/completions', chat('Purge me.', { max_tokens: 12 }))).cache === 'miss');
    expect((await post(b, two.token, '/v1/chat/completions', body)).cache).toBe('hit');

    expect((await admin(a, 'POST', '/admin/proxy-cache/purge', { model: 'gpt-4o-mini' })).status).toBe(200);
    await within(2000, async () => (await post(b, two.token, '/v1/chat/completions', body)).cache === 'miss');

    await post(a, two.token, '/v1/chat/completions', body);
    expect((await admin(a, 'POST', '/admin/proxy-cache/purge', {})).status).toBe(200);
    expect((await post(a, two.token, '/v1/chat/completions', body)).cache).toBe('miss');

    expect((await admin(a, 'POST', '/admin/proxy-cache/purge', { key_id: 42 })).status).toBe(400);
    expect((await admin(a, 'POST', '/admin/proxy-cache/purge', {}, null)).status).toBe(401);
  });
});

describe('proxy response cache bounds and per-key settings (e2e, sqlite, no L2)', () => {
  let one: Awaited<ReturnType<typeof startOne>>;
  let gateway: RunningGateway;

  beforeAll(async () => {
    // Off by default: only keys with their own cache setting are cached.
    one = await startOne({ STORAGE_BACKEND: 'sqlite', SQLITE_PATH: 'ditto.sqlite', PROXY_CACHE_TTL_SECS: '0', PROXY_CACHE_MAX_ENTRY_BYTES: '2000' });
    gateway = one.gateway;
  });

  afterAll(() => one?.close());

  it('is off unless the key turns it on, and expires entries after the key TTL', async () => {
    const plain = await createKey(gateway, { tenant_id: 't' });
    const body = chat('Off by default.');
    expect((await post(gateway, plain.token, '/v1/chat/completions', body)).cache).toBeNull();
    expect((await post(gateway, plain.token, '/v1/chat/completions', body)).cache).toBeNull();

    const cached = await createKey(gateway, { tenant_id: 't', cache: { ttl_secs: 1 } });
    expect((await admin(gateway, 'GET', `/admin/keys/${cached.id}`)).body.cache).toEqual({ ttl_secs: 1 });
    expect((await post(gateway, cached.token, '/v1/chat/completions', body)).cache).toBe('miss');
    expect((await post(gateway, cached.token, '/v1/chat/completions', body)).cache).toBe('hit');
    await new Promise((r) => setTimeout(r, 1100));
    expect((await post(gateway, cached.token, '/v1/chat/completions', body)).cache).toBe('miss');

    expect((await admin(gateway, 'PATCH', `/admin/keys/${cached.id}`, { cache: { ttl_secs: 0 } })).status).toBe(200);
    await within(2000, async () => (await post(gateway, cached.token, '/v1/chat/completions', body)).cache === null);
  });

  it('does not cache a response above PROXY_CACHE_MAX_ENTRY_BYTES', async () => {
    const key = await createKey(gateway, { cache: { ttl_secs: 60 } });
    // 16 tokens of mock reply fit in 2000 bytes; 600 tokens do not.
    const small = chat('Small answer.', { max_tokens: 16 });
    const large = chat('Large answer.', { max_tokens: 600 });
    await post(gateway, key.token, '/v1/chat/completions', small);
    expect((await post(gateway, key.token, '/v1/chat/completions', small)).cache).toBe('hit');
    const first = await post(gateway, key.token, '/v1/chat/completions', large);
    expect(first.text.length).toBeGreaterThan(2000);
    expect((await post(gateway, key.token, '/v1/chat/completions', large)).cache).toBe('miss');
  });

  it('rejects an invalid key cache setting with 400', async () => {
    const bad = await admin(gateway, 'POST', '/admin/keys', { cache: { ttl_secs: -1 } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
  });
});

describe('proxy response cache with PROXY_CACHE_CHARGE=true (e2e, memory store)', () => {
  let one: Awaited<ReturnType<typeof startOne>>;
  let upstream: MockUpstream;
  let gateway: RunningGateway;

  beforeAll(async () => {
    one = await startOne({ STORAGE_BACKEND: 'memory', PROXY_CACHE_TTL_SECS: '60', PROXY_CACHE_CHARGE: 'true' });
    ({ gateway, upstream } = one);
  });

  afterAll(() => one?.close());

  it('charges a hit the stored usage, and refuses a hit the budget cannot pay', async () => {
    const first = await post(gateway, (await createKey(gateway, { tenant_id: 'paying' })).token, '/v1/chat/completions', chat('Charge me twice.'));
    const usage = JSON.parse(first.text).usage.total_tokens as number;
    // Another key of the same tenant, with room for two hits' reservations (estimate = prompt + max_tokens = usage here) but not a third.
    const key = await createKey(gateway, { tenant_id: 'paying', budget: { total_tokens: 2 * usage + 5 } });
    const before = upstreamCalls(upstream);
    expect((await post(gateway, key.token, '/v1/chat/completions', chat('Charge me twice.'))).cache).toBe('hit');
    expect((await post(gateway, key.token, '/v1/chat/completions', chat('Charge me twice.'))).cache).toBe('hit');
    expect(upstreamCalls(upstream)).toBe(before);
    const budget = (await adminGet(gateway, `/admin/budgets/${encodeURIComponent(`key:${key.id}`)}`)).body;
    expect(budget).toMatchObject({ spent_tokens: 2 * usage, reserved_tokens: 0 });
    await within(2000, async () => (await adminGet(gateway, `/admin/audit?key_id=${key.id}&kind=proxy`)).body.items.length === 2);
    const rows = (await adminGet(gateway, `/admin/audit?key_id=${key.id}&kind=proxy`)).body.items as any[];
    expect(rows.every((r) => r.payload.cached === true && r.payload.charged.tokens === usage && r.payload.charged.basis === 'usage')).toBe(true);
    const refused = await post(gateway, key.token, '/v1/chat/completions', chat('Charge me twice.'));
    expect(refused.status).toBe(402);
    expect(JSON.parse(refused.text).error.code).toBe('budget_exceeded');
  });
});
