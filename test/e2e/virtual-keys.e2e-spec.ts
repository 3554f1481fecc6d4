import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { VirtualKeyIndex } from '../../src/virtual-keys/virtual-key-index';
import { BackendEnv, E2E_BACKENDS, backendEnv } from './backends';
import { ADMIN_TOKEN, READ_TOKEN, RunningGateway, admin, startGateway, within } from './harness';

/** Every token the suite sees, to prove none of them is ever logged or audited. */
const issuedTokens: string[] = [];

function accepts(gateway: RunningGateway, token: string): boolean {
  try {
    gateway.app.get(VirtualKeyIndex).authenticate(token);
    return true;
  } catch {
    return false;
  }
}

async function auditRows(gateway: RunningGateway) {
  const rows = [];
  for await (const batch of gateway.app.get(AuditLogRepository).scan({}, 500)) rows.push(...batch);
  return rows;
}

describe.each(E2E_BACKENDS)('virtual keys admin API on %s (e2e)', (backend) => {
  let store: BackendEnv;
  let a: RunningGateway;
  const env = () => ({ ...store.env, ADMIN_TOKEN, ADMIN_READ_TOKEN: READ_TOKEN, BODY_LIMIT_BYTES: '4096' });

  beforeAll(async () => {
    store = await backendEnv(backend);
    a = await startGateway(env());
  });

  afterAll(async () => {
    await a?.close();
    await store?.cleanup();
  });

  it('creates, reads, updates, rotates and deletes a key', async () => {
    const created = await admin(a, 'POST', '/admin/keys', {
      id: 'crud-1',
      name: 'search prod',
      tenant_id: 'acme',
      project_id: 'web',
      models: ['gpt-4o-mini', 'claude-*'],
      limits: { rpm: 60 },
      cache: { ttl_secs: 0 },
      budget: { total_tokens: 100000 },
      metadata: { team: 'search' },
    });
    expect(created.status).toBe(201);
    const token: string = created.body.token;
    issuedTokens.push(token);
    expect(token).toMatch(/^sk-ditto-[0-9A-Za-z]{32,}$/);
    expect(created.body).toMatchObject({
      id: 'crud-1',
      name: 'search prod',
      token_prefix: token.slice(0, 13),
      enabled: true,
      expires_at: null,
      tenant_id: 'acme',
      project_id: 'web',
      user_id: null,
      models: ['gpt-4o-mini', 'claude-*'],
      limits: { rpm: 60, tpm: null },
      cache: { ttl_secs: 0 },
      budget: { total_tokens: 100000, total_usd_micros: null },
      route: null,
      metadata: { team: 'search' },
    });
    expect(accepts(a, token)).toBe(true);

    const read = await admin(a, 'GET', '/admin/keys/crud-1');
    expect(read.status).toBe(200);
    expect(read.body).toEqual({ ...created.body, token: undefined });
    expect(JSON.stringify(read.body)).not.toContain(token);

    const patched = await admin(a, 'PATCH', '/admin/keys/crud-1', {
      enabled: false,
      limits: { tpm: 1000 },
      cache: { ttl_secs: 3600 },
      name: null,
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      enabled: false,
      name: null,
      limits: { rpm: 60, tpm: 1000 },
      cache: { ttl_secs: 3600 },
      tenant_id: 'acme',
    });
    expect(patched.body.updated_at).toBeGreaterThanOrEqual(created.body.updated_at);
    expect(accepts(a, token)).toBe(false);
    // A PATCH that does not name the cache keeps it; `{}` keeps it too; null hands it back to the global TTL.
    expect((await admin(a, 'PATCH', '/admin/keys/crud-1', { enabled: true, cache: {} })).body.cache).toEqual({ ttl_secs: 3600 });

    const rotated = await admin(a, 'POST', '/admin/keys/crud-1/rotate');
    expect(rotated.status).toBe(200);
    issuedTokens.push(rotated.body.token);
    expect(rotated.body.token).not.toBe(token);
    expect(accepts(a, token)).toBe(false);
    expect(accepts(a, rotated.body.token)).toBe(true);

    expect((await admin(a, 'DELETE', '/admin/keys/crud-1')).status).toBe(204);
    expect(accepts(a, rotated.body.token)).toBe(false);
    const gone = await admin(a, 'GET', '/admin/keys/crud-1');
    expect(gone.status).toBe(404);
    expect(gone.body.error).toMatchObject({ code: 'not_found', type: 'invalid_request_error' });
    expect((await admin(a, 'DELETE', '/admin/keys/crud-1')).status).toBe(404);
    expect((await admin(a, 'POST', '/admin/keys/crud-1/rotate')).status).toBe(404);

    const events = (await auditRows(a)).filter((r) => r.keyId === 'crud-1').map((r) => r.kind);
    expect(events).toEqual(['admin.key.create', 'admin.key.update', 'admin.key.update', 'admin.key.rotate', 'admin.key.delete']);
    const update = (await auditRows(a)).find((r) => r.kind === 'admin.key.update')!;
    expect(update.payload).toMatchObject({ actor: 'admin', key_id: 'crud-1', changed: ['name', 'enabled', 'limits', 'cache'] });
  });

  it('follows the global cache TTL unless a key sets its own', async () => {
    const plain = await admin(a, 'POST', '/admin/keys', { id: `cache-${backend}` });
    issuedTokens.push(plain.body.token);
    expect(plain.body.cache).toEqual({ ttl_secs: null });
    const set = await admin(a, 'PATCH', `/admin/keys/cache-${backend}`, { cache: { ttl_secs: 120 } });
    expect(set.body.cache).toEqual({ ttl_secs: 120 });
    expect((await admin(a, 'PATCH', `/admin/keys/cache-${backend}`, { name: 'renamed' })).body.cache).toEqual({ ttl_secs: 120 });
    const reset = await admin(a, 'PATCH', `/admin/keys/cache-${backend}`, { cache: { ttl_secs: null } });
    expect(reset.body.cache).toEqual({ ttl_secs: null });
    expect((await admin(a, 'GET', `/admin/keys/cache-${backend}`)).body.cache).toEqual({ ttl_secs: null });
  });

  it('imports a caller-supplied token', async () => {
    const token = `imported-${backend}-0123456789abcdef`;
    issuedTokens.push(token);
    const created = await admin(a, 'POST', '/admin/keys', { id: `imp-${backend}`, token });
    expect(created.status).toBe(201);
    expect(created.body.token).toBe(token);
    expect(accepts(a, token)).toBe(true);
    const again = await admin(a, 'POST', '/admin/keys', { id: `imp2-${backend}`, token });
    expect(again.status).toBe(409);
  });

  it('filters, and pages through every key exactly once while keys are being added', async () => {
    for (let i = 0; i < 12; i++) {
      const r = await admin(a, 'POST', '/admin/keys', {
        id: `page-${String(i * 2).padStart(2, '0')}`,
        tenant_id: 'paging',
        user_id: i % 3 === 0 ? 'u3' : 'other',
        enabled: i % 4 !== 0,
      });
      expect(r.status).toBe(201);
      issuedTokens.push(r.body.token);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let added = 0;
    do {
      const page = await admin(a, 'GET', `/admin/keys?tenant_id=paging&limit=5${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.items.map((k: { id: string }) => k.id));
      cursor = page.body.next_cursor;
      const r = await admin(a, 'POST', '/admin/keys', { id: `page-${String(added++ * 2 + 1).padStart(2, '0')}`, tenant_id: 'paging' });
      issuedTokens.push(r.body.token);
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    for (let i = 0; i < 12; i++) expect(seen).toContain(`page-${String(i * 2).padStart(2, '0')}`);

    const ids = async (query: string) =>
      (await admin(a, 'GET', `/admin/keys?tenant_id=paging&limit=1000&${query}`)).body.items.map((k: { id: string }) => k.id);
    expect(await ids('user_id=u3')).toEqual(['page-00', 'page-06', 'page-12', 'page-18']);
    expect(await ids('enabled=false')).toEqual(['page-00', 'page-08', 'page-16']);
    expect(await ids('enabled=true&user_id=u3')).toEqual(['page-06', 'page-12', 'page-18']);
    expect((await admin(a, 'GET', '/admin/keys?limit=0')).status).toBe(400);
    expect((await admin(a, 'GET', '/admin/keys?limit=1001')).status).toBe(400);
    expect((await admin(a, 'GET', '/admin/keys?enabled=maybe')).status).toBe(400);
  });

  it('answers bad input with a clear 4xx and changes nothing', async () => {
    const expectError = async (r: Promise<{ status: number; body: any }>, status: number, message?: RegExp) => {
      const { status: got, body } = await r;
      expect(got).toBe(status);
      expect(body.error).toEqual({ message: expect.any(String), type: expect.any(String), code: expect.any(String), param: body.error.param ?? null });
      if (message) expect(body.error.message).toMatch(message);
      expect(JSON.stringify(body)).not.toMatch(/\n\s+at /);
    };
    await expectError(admin(a, 'POST', '/admin/keys', '{"id": "broken",'), 400);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'big', metadata: { blob: 'x'.repeat(5000) } }), 413);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'a/b' }), 400, /id must be/);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'bad\u0001id' }), 400, /id must be/);
    await expectError(admin(a, 'GET', '/admin/keys/a%2Fb'), 400, /id must be/);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'past', expires_at: Date.now() - 1000 }), 400, /expires_at/);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'models', models: ['ok', 42] }), 400, /models/);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'ttl', cache: { ttl_secs: -1 } }), 400, /ttl_secs/);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'ttl', cache: { ttl_secs: 1.5 } }), 400, /ttl_secs/);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'ttl', cache: { ttl: 60 } }), 400, /ttl/);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'unknown', colour: 'blue', shade: 1 }), 400, /colour.*shade|shade.*colour/);
    await expectError(admin(a, 'PATCH', '/admin/keys/nothing-here', { enabled: false }), 404);
    const dup = await admin(a, 'POST', '/admin/keys', { id: 'dup' });
    issuedTokens.push(dup.body.token);
    await expectError(admin(a, 'POST', '/admin/keys', { id: 'dup' }), 409, /already exists/);
    for (const id of ['broken', 'big', 'past', 'models', 'ttl', 'unknown']) expect((await admin(a, 'GET', `/admin/keys/${id}`)).status).toBe(404);
  });

  if (backend !== 'sqlite') {
    it('propagates create, disable, allowed_routes, rotate and delete to a second instance within 1 s', async () => {
      const b = await startGateway(env());
      try {
        const created = await admin(a, 'POST', '/admin/keys', { id: 'replicated' });
        const token = created.body.token;
        issuedTokens.push(token);
        const timings: number[] = [];
        timings.push(await within(1000, () => accepts(b, token)));
        await admin(a, 'PATCH', '/admin/keys/replicated', { enabled: false });
        timings.push(await within(1000, () => !accepts(b, token)));
        await admin(a, 'PATCH', '/admin/keys/replicated', { enabled: true });
        timings.push(await within(1000, () => accepts(b, token)));
        // What the key may do travels too: its allowed_routes and models, as the other replica checks them.
        await admin(a, 'PATCH', '/admin/keys/replicated', { allowed_routes: ['/v1/embeddings'], models: ['text-embedding-3-small'] });
        const index = b.app.get(VirtualKeyIndex);
        timings.push(await within(1000, () => index.authenticate(token).allowedRoutes.join() === '/v1/embeddings' && index.authenticate(token).models.length === 1));
        const rotated = await admin(a, 'POST', '/admin/keys/replicated/rotate');
        issuedTokens.push(rotated.body.token);
        timings.push(await within(1000, () => !accepts(b, token) && accepts(b, rotated.body.token)));
        await admin(a, 'DELETE', '/admin/keys/replicated');
        timings.push(await within(1000, () => !accepts(b, rotated.body.token)));
        expect(Math.max(...timings)).toBeLessThan(1000);
        scanForTokens(b);
      } finally {
        await b.close();
      }
    });
  }

  it('never writes a token into a log line or an audit row', async () => {
    scanForTokens(a);
    const audit = JSON.stringify(await auditRows(a));
    for (const token of issuedTokens) expect(audit).not.toContain(token);
    expect(audit).not.toContain(ADMIN_TOKEN);
    expect(audit).not.toContain(READ_TOKEN);
  });
});

function scanForTokens(gateway: RunningGateway): void {
  const logs = JSON.stringify(gateway.logs);
  expect(gateway.logs.length).toBeGreaterThan(0);
  for (const token of issuedTokens) expect(logs).not.toContain(token);
  expect(logs).not.toContain(ADMIN_TOKEN);
  expect(logs).not.toContain(READ_TOKEN);
}
