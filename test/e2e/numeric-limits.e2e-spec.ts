import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadAppConfig } from '../../src/app-config';
import { openBackend } from '../../src/storage/open-backend';
import { BackendName, StorageBackend } from '../../src/storage/ports/storage-backend';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { BackendEnv, E2E_BACKENDS, backendEnv } from './backends';
import { ADMIN_TOKEN, RunningGateway, admin, adminGet, startGateway, within } from './harness';

/** docs/budgets.md: the largest token or USD-micro limit; spent + reserved + amount stays below 2^53. */
const MAX_LIMIT = 1_000_000_000_000_000;

/** A JSON body written by hand, so that numbers JSON.stringify would rewrite (1e300, 2^53 + 1) go as typed. */
async function raw(gateway: RunningGateway, method: string, path: string, json: string) {
  const response = await fetch(`${gateway.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: json,
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** Values no numeric limit takes: over every maximum, not exactly representable, not integers, negative, strings. */
const BAD_NUMBERS = ['1e300', '9007199254740993', '1000000000000001', '1.5', '-1', '"1e3"', '"10"', 'true'];

describe.each(E2E_BACKENDS)('numeric limits on %s (e2e)', (backend) => {
  let store: BackendEnv;
  let upstream: MockUpstream;
  let gateway: RunningGateway;
  let direct: StorageBackend;
  let dir: string;

  beforeAll(async () => {
    store = await backendEnv(backend);
    upstream = await startMockUpstream({ replyTokens: 7 });
    // A price, so that the cost ledger is charged too (USD per million tokens).
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-numbers-'));
    const config = path.join(dir, 'gateway.json');
    writeFileSync(config, JSON.stringify({ pricing: { 'gpt-4o-mini': { input_per_mtok_usd: 3, output_per_mtok_usd: 11 } } }));
    gateway = await startGateway({ ...store.env, ADMIN_TOKEN, UPSTREAM_BASE_URL: upstream.url, GATEWAY_CONFIG: config, AUDIT_RETENTION_SECS: '0' });
    direct = await openBackend(store.env.STORAGE_BACKEND as BackendName, loadAppConfig(store.env).storage.options);
  });

  afterAll(async () => {
    await direct?.close();
    await gateway?.close();
    await upstream?.close();
    await store?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses every numeric limit that is not a safe integer within its documented maximum, naming the field, and changes nothing', async () => {
    const cases: Array<[method: string, path: string, body: (n: string) => string, field: string]> = [
      ['PUT', '/admin/budgets/tenant:numbers', (n) => `{"limit_tokens":${n}}`, 'limit_tokens'],
      ['PUT', '/admin/costs/tenant:numbers', (n) => `{"limit_usd_micros":${n}}`, 'limit_usd_micros'],
      ['POST', '/admin/keys', (n) => `{"id":"numbers","budget":{"total_tokens":${n}}}`, 'budget.total_tokens'],
      ['POST', '/admin/keys', (n) => `{"id":"numbers","budget":{"total_usd_micros":${n}}}`, 'budget.total_usd_micros'],
      ['POST', '/admin/keys', (n) => `{"id":"numbers","limits":{"rpm":${n}}}`, 'limits.rpm'],
      ['POST', '/admin/keys', (n) => `{"id":"numbers","limits":{"tpm":${n}}}`, 'limits.tpm'],
      ['POST', '/admin/keys', (n) => `{"id":"numbers","cache":{"ttl_secs":${n}}}`, 'cache.ttl_secs'],
      ['POST', '/admin/keys', (n) => `{"id":"numbers","expires_at":${n}}`, 'expires_at'],
      ['PUT', '/admin/limits/tenant:numbers', (n) => `{"rpm":${n}}`, 'rpm'],
      ['POST', '/admin/reservations/reap', (n) => `{"older_than_secs":${n},"dry_run":true}`, 'older_than_secs'],
    ];
    for (const [method, path, body, field] of cases) {
      for (const n of BAD_NUMBERS) {
        const answer = await raw(gateway, method, path, body(n));
        expect({ path, field, n, status: answer.status }).toEqual({ path, field, n, status: 400 });
        expect(answer.body.error.code).toBe('invalid_request');
        expect(answer.body.error.param).toBe(field);
        expect(answer.body.error.message).toContain(field.split('.').pop());
      }
    }
    // Query strings: digits only (no exponent, hex, sign or blank), within the bound.
    for (const query of ['/admin/keys?limit=1e3', '/admin/keys?limit=0x10', '/admin/budgets?limit=%201', '/admin/costs?limit=1001', '/admin/audit?since=1e3']) {
      const answer = await adminGet(gateway, query);
      expect({ query, status: answer.status }).toEqual({ query, status: 400 });
      expect(answer.body.error.code).toBe('invalid_request');
    }
    expect((await adminGet(gateway, '/admin/keys/numbers')).status).toBe(404);
    expect((await adminGet(gateway, '/admin/budgets/tenant:numbers')).status).toBe(404);
    expect((await adminGet(gateway, '/admin/costs/tenant:numbers')).status).toBe(404);
  });

  it('a key and scopes at the maximum limit reserve, settle and read back exactly, through the API and from the store', async () => {
    const created = await admin(gateway, 'POST', '/admin/keys', {
      id: 'at-max',
      tenant_id: 'max-tenant',
      budget: { total_tokens: MAX_LIMIT, total_usd_micros: MAX_LIMIT },
      limits: { rpm: 10_000_000_000, tpm: 10_000_000_000 },
      cache: { ttl_secs: 2_592_000 },
      expires_at: 9_999_999_999_999,
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      budget: { total_tokens: MAX_LIMIT, total_usd_micros: MAX_LIMIT },
      limits: { rpm: 10_000_000_000, tpm: 10_000_000_000 },
      cache: { ttl_secs: 2_592_000 },
      expires_at: 9_999_999_999_999,
    });
    // 15 significant digits: a store that kept 14 (Lua's tostring) or a double's neighbour would show.
    const odd = MAX_LIMIT - 1;
    expect((await admin(gateway, 'PUT', '/admin/budgets/tenant:max-tenant', { limit_tokens: odd })).status).toBe(200);
    expect((await admin(gateway, 'PUT', '/admin/costs/tenant:max-tenant', { limit_usd_micros: odd })).status).toBe(200);

    // A request asking for more output than any model produces is reserved at the per-request maximum.
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${created.body.token}`, 'content-type': 'application/json' },
      body: '{"model":"gpt-4o-mini","max_tokens":9007199254740991,"messages":[{"role":"user","content":"hi"}]}',
    });
    expect(response.status).toBe(200);
    const usage = ((await response.json()) as { usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } }).usage;
    // USD per million tokens × tokens = USD micros.
    const micros = usage.prompt_tokens * 3 + usage.completion_tokens * 11;
    // The settle may land just after the response (Redis batches them).
    await within(5000, async () => (await adminGet(gateway, '/admin/budgets/key:at-max')).body.reserved_tokens === 0);

    const key = await adminGet(gateway, '/admin/budgets/key:at-max');
    expect(key.body).toMatchObject({ limit_tokens: MAX_LIMIT, spent_tokens: usage.total_tokens, reserved_tokens: 0, remaining_tokens: MAX_LIMIT - usage.total_tokens });
    const tenant = await adminGet(gateway, '/admin/budgets/tenant:max-tenant');
    expect(tenant.body).toMatchObject({ limit_tokens: odd, spent_tokens: usage.total_tokens, reserved_tokens: 0, remaining_tokens: odd - usage.total_tokens });
    const cost = await adminGet(gateway, '/admin/costs/tenant:max-tenant');
    expect(cost.body).toMatchObject({ limit_usd_micros: odd, spent_usd_micros: micros, reserved_usd_micros: 0, remaining_usd_micros: odd - micros });

    // What the store itself holds (its mappers: Redis strings, PostgreSQL bigint, MongoDB int64).
    const stored = await direct.keys.get('at-max');
    expect(stored).toMatchObject({ budget: { totalTokens: MAX_LIMIT, totalUsdMicros: MAX_LIMIT }, expiresAt: 9_999_999_999_999 });
    expect(await direct.budgets.get('tenant:max-tenant')).toMatchObject({ limit: odd, spent: usage.total_tokens, reserved: 0 });
    expect(await direct.costs.get('key:at-max')).toMatchObject({ limit: MAX_LIMIT, spent: micros, reserved: 0 });
  });

  it('charges an upstream that reports 1e300 tokens the per-request maximum (10^9), and the ledgers stay exact', async () => {
    const created = await admin(gateway, 'POST', '/admin/keys', { id: 'hostile-upstream', budget: { total_tokens: MAX_LIMIT } });
    const ask = () =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${created.body.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] }),
      });
    upstream.options = { replyTokens: 7, usage: { prompt_tokens: 1e300, completion_tokens: 1e300, total_tokens: 1e300 } };
    const hostile = await ask();
    upstream.options = { replyTokens: 7 };
    expect(hostile.status).toBe(200);
    await hostile.text();
    await within(5000, async () => (await adminGet(gateway, '/admin/budgets/key:hostile-upstream')).body.reserved_tokens === 0);
    expect((await adminGet(gateway, '/admin/budgets/key:hostile-upstream')).body).toMatchObject({ spent_tokens: 1_000_000_000, reserved_tokens: 0 });

    // An odd amount on top: still exact.
    const normal = await ask();
    const usage = ((await normal.json()) as { usage: { total_tokens: number } }).usage;
    await within(5000, async () => (await adminGet(gateway, '/admin/budgets/key:hostile-upstream')).body.spent_tokens === 1_000_000_000 + usage.total_tokens);
    expect((await direct.budgets.get('key:hostile-upstream'))!.spent).toBe(1_000_000_000 + usage.total_tokens);
    expect(gateway.logs.filter((l) => l.level === 'error')).toEqual([]);
  });
});
