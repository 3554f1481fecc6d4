import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { AuditRecord } from '../../src/audit/domain/audit-record';
import { estimatePromptTokens } from '../../src/budgets/token-estimate';
import { loadAppConfig } from '../../src/app-config';
import { openBackend } from '../../src/storage/open-backend';
import { BackendName } from '../../src/storage/ports/storage-backend';
import Redis from 'ioredis';
import { BackendEnv, E2E_BACKENDS, backendEnv } from './backends';
import { ADMIN_TOKEN, READ_TOKEN, RunningGateway, admin, adminGet, startGateway, within } from './harness';

/** gateway.json prices, USD per million tokens: integers per token, so costs are exact by hand. */
const PRICES = { 'gpt-4o-mini': { input_per_mtok_usd: 2, output_per_mtok_usd: 8, cached_input_per_mtok_usd: 1 } };
const MESSAGES = [{ role: 'user', content: 'Count to three, slowly please.' }];
/** Prompt tokens of MESSAGES as both the gateway and the mock (OpenAI's arithmetic) count them. */
const PROMPT = estimatePromptTokens('/chat/completions', { model: 'gpt-4o-mini', messages: MESSAGES });
const REPLY = 20;
const MAX_TOKENS = 40;

interface Answer {
  status: number;
  body: any;
}

function writeConfig(dir: string, upstream: MockUpstream, extra: Record<string, unknown> = {}, timeoutMs = 400): string {
  const file = path.join(dir, 'gateway.json');
  writeFileSync(file, JSON.stringify({ backends: [{ name: 'mock', base_url: upstream.url, timeout_ms: timeoutMs }], pricing: PRICES, ...extra }));
  return file;
}

async function chat(gateway: RunningGateway, token: string, body: Record<string, unknown>): Promise<Answer> {
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, ...body }),
  });
  const text = await response.text();
  return { status: response.status, body: text.startsWith('{') ? JSON.parse(text) : text };
}

async function createKey(gateway: RunningGateway, body: Record<string, unknown>): Promise<string> {
  const created = await admin(gateway, 'POST', '/admin/keys', body);
  expect(created.status).toBe(201);
  return created.body.token as string;
}

/** GET /admin/{budgets|costs}/:scope (the scope URL-encoded). */
async function scope(gateway: RunningGateway, ledger: 'budgets' | 'costs', name: string): Promise<any> {
  const answer = await adminGet(gateway, `/admin/${ledger}/${encodeURIComponent(name)}`);
  expect(answer.status).toBe(200);
  return answer.body;
}

const settled = (gateway: RunningGateway, name: string) =>
  within(5000, async () => (await scope(gateway, 'budgets', name)).reserved_tokens === 0 && (await scope(gateway, 'costs', name)).reserved_usd_micros === 0);

describe.each(E2E_BACKENDS)('budgets across two replicas on %s (e2e)', (backend) => {
  let store: BackendEnv;
  let upstream: MockUpstream;
  let dir: string;
  let a: RunningGateway;
  let b: RunningGateway;

  beforeAll(async () => {
    store = await backendEnv(backend);
    upstream = await startMockUpstream({ replyTokens: REPLY });
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-budgets-'));
    // A generous timeout: a 504 would be charged its reservation (the upstream may have worked), and
    // this test counts exactly what the clients received.
    const env = { ...store.env, GATEWAY_CONFIG: writeConfig(dir, upstream, {}, 30_000), ADMIN_TOKEN, AUDIT_FLUSH_MS: '50', CHANGE_FEED_POLL_MS: '50' };
    a = await startGateway(env);
    b = await startGateway(env);
  }, 30_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await upstream?.close();
    await store?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never overspends with n > 1 under 200 concurrent requests: every choice is reserved', async () => {
    const limit = 2000;
    const token = await createKey(a, { id: 'choices', budget: { total_tokens: limit } });
    await within(3000, async () => (await fetch(`${b.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status === 200);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => chat(i % 2 ? a : b, token, { n: 4, max_tokens: 10 })));
    const ok = answers.filter((r) => r.status === 200);
    expect(ok.length).toBeGreaterThan(0);
    for (const r of answers) if (r.status !== 200) expect([r.status, r.body.error.code]).toEqual([402, 'budget_exceeded']);
    for (const r of ok) expect(r.body.choices).toHaveLength(4);
    await settled(a, 'key:choices');
    const key = await scope(b, 'budgets', 'key:choices');
    expect(key.spent_tokens).toBeLessThanOrEqual(limit);
    expect(key.spent_tokens).toBe(ok.reduce((sum, r) => sum + (r.body.usage.total_tokens as number), 0));
  }, 60_000);

  it('a limit set on one replica is known to the other within a second, without a read per request', async () => {
    const token = await createKey(a, { id: 'feed', tenant_id: 'feed-t' });
    await within(3000, async () => (await fetch(`${b.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status === 200);
    // No limit anywhere: an unpriced model is served, and strict mode leaves the request as sent.
    expect((await chat(b, token, { model: 'mystery-model' })).status).toBe(200);
    expect(upstream.requests.at(-1)!.body.max_tokens).toBeUndefined();
    expect((await admin(a, 'PUT', '/admin/costs/tenant:feed-t', { limit_usd_micros: 1_000_000 })).status).toBe(200);
    await within(2000, async () => (await chat(b, token, { model: 'mystery-model' })).status === 402);
    expect((await chat(b, token, { model: 'mystery-model' })).body.error).toMatchObject({ code: 'cost_unknown_model' });
    // A token limit on the tenant: replica B now writes the output cap into a request without one.
    expect((await admin(a, 'PUT', '/admin/budgets/tenant:feed-t', { limit_tokens: 1_000_000 })).status).toBe(200);
    await within(2000, async () => (await chat(b, token, {})).status === 200 && upstream.requests.at(-1)!.body.max_tokens !== undefined);
  });

  it('never overspends under 300 concurrent requests, charges each 2xx its real usage, and audits every charge', async () => {
    const perRequest = PROMPT + REPLY;
    const limit = 50 * perRequest;
    const token = await createKey(a, { id: 'shared', tenant_id: 'acme', project_id: 'web', budget: { total_tokens: limit } });
    // GET /v1/models is not charged: a probe that B knows the key without spending anything.
    await within(3000, async () => (await fetch(`${b.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status === 200);

    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => chat(i % 2 ? a : b, token, { max_tokens: MAX_TOKENS })));
    const ok = answers.filter((r) => r.status === 200);
    const refused = answers.filter((r) => r.status !== 200);
    expect(ok.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.status).toBe(402);
      expect(r.body.error).toMatchObject({ code: 'budget_exceeded', type: 'insufficient_quota' });
      expect(r.body.error.message).toContain("'key:shared'");
    }
    // Strict mode (the default) caps the output of a request that does not fit whole to what still fits.
    for (const r of ok) {
      expect(r.body.usage.prompt_tokens).toBe(PROMPT);
      expect(r.body.usage.completion_tokens).toBeGreaterThanOrEqual(1);
      expect(r.body.usage.completion_tokens).toBeLessThanOrEqual(REPLY);
    }
    const received = ok.reduce((sum, r) => sum + (r.body.usage.total_tokens as number), 0);
    const receivedOutput = ok.reduce((sum, r) => sum + (r.body.usage.completion_tokens as number), 0);

    await settled(a, 'key:shared');
    const key = await scope(b, 'budgets', 'key:shared');
    expect(key.limit_tokens).toBe(limit);
    expect(key.spent_tokens).toBeLessThanOrEqual(limit);
    expect(key.spent_tokens).toBe(received);
    for (const aggregate of ['tenant:acme', 'project:acme/web']) {
      expect(await scope(a, 'budgets', aggregate)).toMatchObject({ spent_tokens: key.spent_tokens, reserved_tokens: 0, limit_tokens: null });
    }
    const cost = await scope(a, 'costs', 'key:shared');
    expect(cost).toMatchObject({ spent_usd_micros: ok.length * PROMPT * 2 + receivedOutput * 8, reserved_usd_micros: 0 });

    await a.close();
    await b.close();
    const direct = await openBackend(store.env.STORAGE_BACKEND as BackendName, loadAppConfig(store.env).storage.options);
    try {
      const rows: AuditRecord[] = [];
      for await (const batch of direct.audit.scan({ keyId: 'shared', kind: 'proxy*' }, 500)) rows.push(...batch);
      const charged = rows.filter((r) => r.kind === 'proxy' && r.payload.path === '/v1/chat/completions');
      expect(charged).toHaveLength(ok.length);
      for (const r of charged) {
        expect(r.payload).toMatchObject({ status: 200, scopes: ['key:shared', 'tenant:acme', 'project:acme/web'], charged: { basis: 'usage' } });
      }
      const audited = charged.reduce((sum, r) => sum + (r.payload.charged as { tokens: number }).tokens, 0);
      expect(audited).toBe((await direct.budgets.get('key:shared'))!.spent);
      const blocked = rows.filter((r) => r.kind === 'proxy.blocked');
      expect(blocked).toHaveLength(refused.length);
      for (const r of blocked) expect(r.payload).toMatchObject({ status: 402, error: 'budget_exceeded', charged: null });
    } finally {
      await direct.close();
    }
    // MongoDB through FerretDB runs one command at a time (test/support/serial-relay.ts): seconds, not ms,
    // and tens of seconds on a loaded machine.
  }, 120_000);
});

describe('budget settlement on every path (e2e, sqlite)', () => {
  let store: BackendEnv;
  let upstream: MockUpstream;
  let dir: string;
  let gateway: RunningGateway;
  let keys = 0;

  /** A fresh key (own scopes) with a roomy budget. */
  const freshKey = async (extra: Record<string, unknown> = {}) => {
    const id = `k${++keys}`;
    return { id, scope: `key:${id}`, token: await createKey(gateway, { id, budget: { total_tokens: 100_000 }, ...extra }) };
  };

  beforeAll(async () => {
    store = await backendEnv('sqlite');
    upstream = await startMockUpstream();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-settle-'));
    gateway = await startGateway({ ...store.env, GATEWAY_CONFIG: writeConfig(dir, upstream), ADMIN_TOKEN, ADMIN_READ_TOKEN: READ_TOKEN });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    await store?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.options = { replyTokens: REPLY };
    upstream.requests.length = 0;
  });

  it('charges a stream without include_usage its real usage, and the client sees no usage chunk', async () => {
    const { scope: name, token } = await freshKey();
    const answer = await chat(gateway, token, { max_tokens: MAX_TOKENS, stream: true });
    expect(answer.status).toBe(200);
    expect(answer.body).toContain('data: [DONE]');
    expect(answer.body).not.toContain('"usage"');
    expect(upstream.requests[0].body.stream_options).toEqual({ include_usage: true });
    await settled(gateway, name);
    expect((await scope(gateway, 'budgets', name)).spent_tokens).toBe(PROMPT + REPLY);
  });

  it('releases the reservation and charges the estimate when the client aborts mid-stream', async () => {
    upstream.options = { chunkDelayMs: 40 };
    const { scope: name, token } = await freshKey();
    const abort = new AbortController();
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, max_tokens: 50, stream: true }),
      signal: abort.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    expect((await scope(gateway, 'budgets', name)).reserved_tokens).toBe(PROMPT + 50);
    abort.abort();
    await settled(gateway, name);
    expect((await scope(gateway, 'budgets', name)).spent_tokens).toBe(PROMPT + 50);
  });

  it('reserves every choice of n > 1: a 200-token key is never overspent by n:16 calls', async () => {
    // The reported leak: each call reserved one choice's output, and two n:16 calls spent 336 of 200.
    const { scope: name, token } = await freshKey({ budget: { total_tokens: 200 } });
    const first = await chat(gateway, token, { n: 16, max_tokens: 10 });
    expect(first.status).toBe(200);
    expect(first.body.usage).toMatchObject({ prompt_tokens: PROMPT, completion_tokens: 160 });
    const second = await chat(gateway, token, { n: 16, max_tokens: 10 });
    expect(second.status).toBe(402);
    expect(second.body.error.code).toBe('budget_exceeded');
    // Without a limit of its own, strict mode writes the per-choice cap that makes all 16 fit.
    const { scope: other, token: roomy } = await freshKey({ budget: { total_tokens: 200 } });
    upstream.requests.length = 0;
    const capped = await chat(gateway, roomy, { n: 16 });
    expect(capped.status).toBe(200);
    expect(upstream.requests[0].body.max_tokens).toBe(Math.floor((200 - PROMPT) / 16));
    await settled(gateway, name);
    await settled(gateway, other);
    expect(await scope(gateway, 'budgets', name)).toMatchObject({ spent_tokens: PROMPT + 160, reserved_tokens: 0 });
    expect((await scope(gateway, 'budgets', other)).spent_tokens).toBeLessThanOrEqual(200);
    // n and best_of outside 1–128 are refused before anything is reserved or sent.
    for (const bad of [{ n: 0 }, { n: 129 }, { n: 1.5 }, { best_of: -1 }, { n: '2' }]) {
      const refused = await chat(gateway, token, bad);
      expect([bad, refused.status, refused.body.error?.code]).toEqual([bad, 400, 'invalid_request']);
    }
    expect(upstream.requests).toHaveLength(1);
  });

  it('charges nothing for an upstream 500, and keeps nothing reserved', async () => {
    const { scope: name, token } = await freshKey();
    upstream.options = { failStatus: 500 };
    expect((await chat(gateway, token, { max_tokens: 10 })).status).toBe(500);
    await settled(gateway, name);
    expect(await scope(gateway, 'budgets', name)).toMatchObject({ spent_tokens: 0, reserved_tokens: 0 });
    expect(await scope(gateway, 'costs', name)).toMatchObject({ spent_usd_micros: 0, reserved_usd_micros: 0 });
  });

  it('charges a timeout its reservation: the request reached the upstream, which may have done the work', async () => {
    const { scope: name, token } = await freshKey();
    upstream.options = { hang: true };
    const timedOut = await chat(gateway, token, { max_tokens: 10 });
    expect(timedOut.status).toBe(504);
    expect(timedOut.body.error.code).toBe('backend_timeout');
    expect(upstream.requests).toHaveLength(1);
    await settled(gateway, name);
    expect(await scope(gateway, 'budgets', name)).toMatchObject({ spent_tokens: PROMPT + 10, reserved_tokens: 0 });
    expect(await scope(gateway, 'costs', name)).toMatchObject({ spent_usd_micros: PROMPT * 2 + 10 * 8, reserved_usd_micros: 0 });
  });

  it('prices usage in integer USD micros, cached prompt tokens at their own rate', async () => {
    upstream.options = { replyTokens: REPLY, cachedTokens: 5 };
    const { scope: name, token } = await freshKey();
    const answer = await chat(gateway, token, { max_tokens: MAX_TOKENS });
    expect(answer.body.usage.prompt_tokens_details).toEqual({ cached_tokens: 5 });
    await settled(gateway, name);
    // (uncached × $2 + cached × $1 + output × $8) per million tokens = micros per token.
    expect((await scope(gateway, 'costs', name)).spent_usd_micros).toBe((PROMPT - 5) * 2 + 5 * 1 + REPLY * 8);
  });

  it('refuses with cost_budget_exceeded naming the scope, and an unpriced model under a cost limit', async () => {
    const { token } = await freshKey({ tenant_id: 'frugal' });
    // Room for the prompt and not one output token, so neither mode can admit it.
    const put = await admin(gateway, 'PUT', '/admin/costs/tenant:frugal', { limit_usd_micros: PROMPT * 2 + 7 });
    expect(put.status).toBe(200);
    const refused = await chat(gateway, token, { max_tokens: MAX_TOKENS });
    expect(refused.status).toBe(402);
    expect(refused.body.error).toMatchObject({ code: 'cost_budget_exceeded', type: 'insufficient_quota' });
    expect(refused.body.error.message).toContain("'tenant:frugal'");
    const unpriced = await chat(gateway, token, { model: 'mystery-model', max_tokens: 1 });
    expect(unpriced.status).toBe(402);
    expect(unpriced.body.error).toMatchObject({ code: 'cost_unknown_model', param: 'model' });
    expect(upstream.requests).toHaveLength(0);
    // Refused on the cost ledger, so nothing was reserved on the token ledger either.
    expect((await adminGet(gateway, `/admin/budgets/${encodeURIComponent('tenant:frugal')}`)).status).toBe(404);
    expect(await scope(gateway, 'costs', 'tenant:frugal')).toMatchObject({ spent_usd_micros: 0, reserved_usd_micros: 0 });
  });

  it('applies a key budget to its scope, and sets, lists, resets and validates limits over the admin API', async () => {
    const { id, scope: name, token } = await freshKey({ tenant_id: 'admin-t', project_id: 'web' });
    expect(await scope(gateway, 'budgets', name)).toMatchObject({ scope: name, limit_tokens: 100_000, spent_tokens: 0 });
    await admin(gateway, 'PATCH', `/admin/keys/${id}`, { budget: { total_tokens: 5000, total_usd_micros: 9000 } });
    expect((await scope(gateway, 'budgets', name)).limit_tokens).toBe(5000);
    expect((await scope(gateway, 'costs', name)).limit_usd_micros).toBe(9000);
    expect((await chat(gateway, token, { max_tokens: 1 })).status).toBe(200);

    const project = encodeURIComponent('project:admin-t/web');
    const set = await admin(gateway, 'PUT', `/admin/budgets/${project}`, { limit_tokens: 777, reset_every: '7d' });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ scope: 'project:admin-t/web', limit_tokens: 777, reset_every: '7d', spent_tokens: PROMPT + 1 });
    expect(set.body.window_ends_at - set.body.window_start).toBe(7 * 86_400_000);
    // Omitting reset_every keeps the window; null makes the limit a lifetime one.
    expect((await admin(gateway, 'PUT', `/admin/budgets/${project}`, { limit_tokens: 800 })).body.reset_every).toBe('7d');
    expect((await admin(gateway, 'PUT', `/admin/budgets/${project}`, { limit_tokens: 800, reset_every: null })).body.window_start).toBeNull();

    const tenants = await adminGet(gateway, '/admin/budgets?type=tenant');
    expect(tenants.body.items.map((s: { scope: string }) => s.scope)).toContain('tenant:admin-t');
    expect(tenants.body.items.every((s: { scope: string }) => s.scope.startsWith('tenant:'))).toBe(true);
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await adminGet(gateway, `/admin/costs?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      paged.push(...page.body.items.map((s: { scope: string }) => s.scope));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(new Set(paged).size).toBe(paged.length);
    expect(paged).toContain(name);

    const reset = await admin(gateway, 'POST', `/admin/budgets/${encodeURIComponent(name)}/reset`);
    expect(reset.status).toBe(200);
    expect(reset.body).toMatchObject({ spent_tokens: 0, limit_tokens: 5000 });

    const bad = [
      await admin(gateway, 'PUT', '/admin/budgets/tenant:x', { limit_tokens: -1 }),
      await admin(gateway, 'PUT', '/admin/budgets/tenant:x', { limit_tokens: 10, reset_every: 'weekly' }),
      await admin(gateway, 'PUT', '/admin/budgets/tenant:x', { limit: 10 }),
      await admin(gateway, 'PUT', '/admin/budgets/team:x', { limit_tokens: 10 }),
      await adminGet(gateway, '/admin/budgets?limit=5000'),
      await adminGet(gateway, '/admin/budgets?type=team'),
    ];
    for (const answer of bad) {
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('invalid_request');
    }
    expect(bad.slice(0, 3).map((answer) => answer.body.error.param)).toEqual(['limit_tokens', 'reset_every', 'limit']);
    expect(bad[2].body.error.message).toContain('property limit should not exist');
    expect((await adminGet(gateway, `/admin/budgets/${encodeURIComponent('tenant:nobody')}`)).status).toBe(404);
    expect((await admin(gateway, 'POST', '/admin/costs/tenant:nobody/reset')).status).toBe(404);
    expect((await admin(gateway, 'PUT', '/admin/budgets/tenant:x', { limit_tokens: 1 }, READ_TOKEN)).status).toBe(403);
    expect((await adminGet(gateway, '/admin/budgets/tenant:admin-t', READ_TOKEN)).status).toBe(200);
  });

  it('charges a request whose reservation was reaped while it ran, once it ends', async () => {
    upstream.options = { chunkDelayMs: 40 };
    const { scope: name, token } = await freshKey();
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, max_tokens: 10, stream: true }),
    });
    const reader = response.body!.getReader();
    await reader.read();
    // The reaper takes the reservation of the request still running (as if RESERVATION_TTL_SECS were too short).
    const reaped = await admin(gateway, 'POST', '/admin/reservations/reap', { older_than_secs: 0 });
    expect(reaped.body.tokens.count).toBeGreaterThanOrEqual(1);
    expect((await scope(gateway, 'budgets', name)).reserved_tokens).toBe(0);
    while (!(await reader.read()).done);
    // Charged its real usage anyway, exactly once, and nothing left reserved.
    await within(5000, async () => (await scope(gateway, 'budgets', name)).spent_tokens === PROMPT + 10);
    await settled(gateway, name);
    expect((await scope(gateway, 'budgets', name)).spent_tokens).toBe(PROMPT + 10);
    expect((await scope(gateway, 'costs', name)).spent_usd_micros).toBe(PROMPT * 2 + 10 * 8);
  });

  it('reaps reservations a crashed replica left behind, with a dry run first', async () => {
    const direct = await openBackend('sqlite', loadAppConfig(store.env).storage.options);
    try {
      const old = Date.now() - 3_600_000;
      await direct.budgets.reserve('crashed-1', ['key:ghost'], 500, old);
      await direct.costs.reserve('crashed-1', ['key:ghost'], 70, old);
    } finally {
      await direct.close();
    }
    expect((await scope(gateway, 'budgets', 'key:ghost')).reserved_tokens).toBe(500);
    const dry = await admin(gateway, 'POST', '/admin/reservations/reap', { older_than_secs: 600, dry_run: true });
    expect(dry.status).toBe(200);
    expect(dry.body.tokens).toEqual({ count: 1, items: [expect.objectContaining({ id: 'crashed-1', scopes: ['key:ghost'], amount: 500 })] });
    expect((await scope(gateway, 'budgets', 'key:ghost')).reserved_tokens).toBe(500);
    const reaped = await admin(gateway, 'POST', '/admin/reservations/reap', { older_than_secs: 600 });
    expect(reaped.body).toMatchObject({ dry_run: false, older_than_secs: 600, tokens: { count: 1 }, usd_micros: { count: 1 } });
    expect((await scope(gateway, 'budgets', 'key:ghost')).reserved_tokens).toBe(0);
    expect((await scope(gateway, 'costs', 'key:ghost')).reserved_usd_micros).toBe(0);
    expect((await admin(gateway, 'POST', '/admin/reservations/reap', { older_than_secs: -5 })).status).toBe(400);
  });
});

describe('strict budget mode (e2e, sqlite)', () => {
  let store: BackendEnv;
  let upstream: MockUpstream;
  let dir: string;
  let gateway: RunningGateway;

  beforeAll(async () => {
    store = await backendEnv('sqlite');
    upstream = await startMockUpstream();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-strict-'));
    gateway = await startGateway({ ...store.env, GATEWAY_CONFIG: writeConfig(dir, upstream), ADMIN_TOKEN, BUDGET_MODE: 'strict' });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    await store?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('caps max_tokens to what is left, so the scope never goes over', async () => {
    const token = await createKey(gateway, { id: 'strict', budget: { total_tokens: 100 } });
    // The mock answers exactly max_tokens tokens (no natural stop): only the cap keeps usage in budget.
    const first = await chat(gateway, token, {});
    expect(first.status).toBe(200);
    expect(upstream.requests[0].body.max_tokens).toBe(100 - PROMPT);
    expect(first.body.usage.total_tokens).toBe(100);
    await settled(gateway, 'key:strict');
    expect((await scope(gateway, 'budgets', 'key:strict')).spent_tokens).toBe(100);

    const none = await chat(gateway, token, {});
    expect(none.status).toBe(402);
    expect(none.body.error.code).toBe('budget_exceeded');
    expect(upstream.requests).toHaveLength(1);

    await admin(gateway, 'PUT', '/admin/budgets/key:strict', { limit_tokens: 100 + PROMPT + 10 });
    const lowered = await chat(gateway, token, { max_tokens: 500 });
    expect(lowered.status).toBe(200);
    expect(upstream.requests[1].body.max_tokens).toBe(10);
    await settled(gateway, 'key:strict');
    expect((await scope(gateway, 'budgets', 'key:strict')).spent_tokens).toBe(100 + PROMPT + 10);
  });
});

describe('one reserve and one settle per request, nothing else from the store (e2e, redis)', () => {
  /** Commands that read a ledger (or any) key without changing it. */
  const READS = new Set(['get', 'mget', 'hget', 'hgetall', 'hmget', 'exists', 'zscore', 'zrange', 'zrangebyscore', 'scan', 'ttl', 'pttl', 'type', 'smembers']);

  it('strict mode (the default) and an unpriced model under no cost limit: script calls only, no read', async () => {
    const store = await backendEnv('redis');
    const upstream = await startMockUpstream({ replyTokens: REPLY });
    const dir = mkdtempSync(path.join(tmpdir(), 'ditto-round-trips-'));
    const gateway = await startGateway({ ...store.env, GATEWAY_CONFIG: writeConfig(dir, upstream), ADMIN_TOKEN });
    const raw = new Redis(store.env.REDIS_URL);
    const monitor = await raw.monitor();
    try {
      const token = await createKey(gateway, { id: 'trips', tenant_id: 'acme', budget: { total_tokens: 1_000_000, total_usd_micros: 1_000_000 } });
      expect((await admin(gateway, 'PUT', '/admin/budgets/tenant:acme', { limit_tokens: 2_000_000 })).status).toBe(200);
      // The change feed tells every replica, this one included, which reads the new limit once (LimitIndex).
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const seen: string[] = [];
      // What the gateway sends: commands a script runs inside Redis are reported too, from source "lua".
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        if (source !== 'lua' && args.some((a) => a.startsWith(`${store.env.REDIS_PREFIX}:`))) seen.push(args[0].toLowerCase());
      });
      for (const body of [{}, { max_tokens: 10 }, { n: 2 }]) expect((await chat(gateway, token, body)).status).toBe(200);
      await within(3000, async () => seen.filter((c) => c === 'evalsha' || c === 'eval').length >= 2);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(seen.filter((c) => READS.has(c))).toEqual([]);
      // Per request a reserve, a settle and its audit row, each a script call (batched when they meet): at most three.
      expect(seen.filter((c) => c === 'evalsha' || c === 'eval').length).toBeLessThanOrEqual(9);
      expect(seen.filter((c) => c !== 'evalsha' && c !== 'eval' && !READS.has(c))).toEqual([]);
    } finally {
      monitor.disconnect();
      raw.disconnect();
      await gateway.close();
      await upstream.close();
      await store.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});
