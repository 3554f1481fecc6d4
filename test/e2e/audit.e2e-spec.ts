import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { AuditRecord } from '../../src/audit/domain/audit-record';
import { verifyExport } from '../../src/audit/export/verify';
import { loadAppConfig } from '../../src/app-config';
import { openBackend } from '../../src/storage/open-backend';
import { BackendName, StorageBackend } from '../../src/storage/ports/storage-backend';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { BackendEnv, E2E_BACKENDS, backendEnv } from './backends';
import { VERIFY_JS, requireBuild } from './child-gateway';
import { ADMIN_TOKEN, READ_TOKEN, RunningGateway, admin, adminGet, startGateway, within } from './harness';

const UPSTREAM_KEY = 'sk-upstream-audit-secret-0123456789';

/** The same store, opened directly (not through a gateway): to plant rows with chosen timestamps. */
function openStore(env: Record<string, string>): Promise<StorageBackend> {
  return openBackend(env.STORAGE_BACKEND as BackendName, loadAppConfig(env).storage.options);
}

const BASE_TS = 1_600_000_000_000;
const KINDS = ['proxy', 'proxy.blocked', 'proxy.error', 'admin.key.create', 'admin.budget.set', 'administrative'];

/** 90 rows in 2020 (far outside anything the gateway writes itself), several per millisecond. */
function plantedRows(): AuditRecord[] {
  return Array.from({ length: 90 }, (_, i) => ({
    id: `planted-${String(i).padStart(3, '0')}-${i % 7}`,
    ts: BASE_TS + Math.floor(i / 3) * 1000,
    kind: KINDS[i % KINDS.length],
    requestId: i % 5 === 0 ? null : `req-${i}`,
    keyId: i % 4 === 0 ? null : `key-${i % 3}`,
    tenantId: i % 2 === 0 ? 'tenant-a' : 'tenant-b',
    payload: { i, note: i % 10 === 0 ? 'quote " comma , newline\n' : 'plain', nested: { b: 2, a: [1, null] } },
  }));
}

/** GET /admin/audit page by page with `limit`; asserts every page's shape on the way. */
async function allPages(gateway: RunningGateway, query: string, limit: number): Promise<Array<Record<string, any>>> {
  const items: Array<Record<string, any>> = [];
  let cursor: string | null = null;
  do {
    const url: string = `/admin/audit?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await adminGet(gateway, url);
    expect(page.status).toBe(200);
    expect(page.body.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.body.items);
    cursor = page.body.next_cursor;
  } while (cursor !== null);
  return items;
}

const newestFirst = (a: AuditRecord, b: AuditRecord) => b.ts - a.ts || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

function wire(r: AuditRecord) {
  return { id: r.id, ts: r.ts, kind: r.kind, request_id: r.requestId, key_id: r.keyId, tenant_id: r.tenantId, payload: r.payload };
}

async function text(gateway: RunningGateway, path: string, token = ADMIN_TOKEN): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(`${gateway.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, headers: response.headers, body: await response.text() };
}

describe.each(E2E_BACKENDS)('audit trail on %s (e2e)', (backend) => {
  let store: BackendEnv;
  let upstream: MockUpstream;
  let gateway: RunningGateway;
  let direct: StorageBackend;
  let token = '';
  const planted = plantedRows();

  beforeAll(async () => {
    store = await backendEnv(backend);
    upstream = await startMockUpstream();
    gateway = await startGateway({
      ...store.env,
      ADMIN_TOKEN,
      ADMIN_READ_TOKEN: READ_TOKEN,
      UPSTREAM_BASE_URL: upstream.url,
      UPSTREAM_API_KEY: UPSTREAM_KEY,
      AUDIT_FLUSH_MS: '20',
      // The planted rows are from 2020: keep the retention job from deleting them mid-test.
      AUDIT_RETENTION_SECS: '0',
    });
    direct = await openStore(store.env);
    await direct.audit.append(planted);
  });

  afterAll(async () => {
    await direct?.close();
    await gateway?.close();
    await upstream?.close();
    await store?.cleanup();
  });

  it('records proxied requests and admin mutations with the documented fields, and no secret', async () => {
    const keyId = `audited-${backend}`;
    const created = await admin(gateway, 'POST', '/admin/keys', { id: keyId, tenant_id: 'acme', models: ['gpt-4o-mini'] });
    expect(created.status).toBe(201);
    token = created.body.token;
    expect((await admin(gateway, 'PATCH', `/admin/keys/${keyId}`, { name: 'audited key' })).status).toBe(200);

    const chat = (body: object, key = token) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const ok = await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5 });
    expect(ok.status).toBe(200);
    await ok.text();
    const streamed = await chat({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    expect(streamed.status).toBe(200);
    await streamed.text();
    const refused = await chat({ model: 'gpt-4o', messages: [] });
    expect(refused.status).toBe(403);
    await refused.text();
    const unknownKey = await chat({ model: 'gpt-4o-mini', messages: [] }, 'sk-ditto-not-a-real-key-0123456789');
    expect(unknownKey.status).toBe(401);
    await unknownKey.text();

    // Proxy events are batched (AUDIT_FLUSH_MS): poll the API until all four are there.
    let rows: Array<Record<string, any>> = [];
    await within(5000, async () => {
      rows = (await adminGet(gateway, `/admin/audit?kind=proxy*&since=${Date.now() - 60_000}&limit=1000`)).body.items;
      return rows.length >= 4;
    });
    expect(rows).toHaveLength(4);
    for (const row of rows) {
      expect(Object.keys(row).sort()).toEqual(['id', 'key_id', 'kind', 'payload', 'request_id', 'tenant_id', 'ts']);
      expect(row.id).toEqual(expect.any(String));
      expect(Math.abs(row.ts - Date.now())).toBeLessThan(60_000);
      expect(row.request_id).toEqual(expect.any(String));
    }
    // Events are recorded when a response ends, so their order need not be the requests' order.
    const byRequest = (r: Response) => rows.find((row) => row.request_id === r.headers.get('x-ditto-request-id'));
    const [plain, stream, blocked, unknown] = [ok, streamed, refused, unknownKey].map(byRequest);
    expect(plain).toMatchObject({
      kind: 'proxy',
      key_id: keyId,
      tenant_id: 'acme',
      request_id: ok.headers.get('x-ditto-request-id'),
      payload: {
        method: 'POST',
        path: '/v1/chat/completions',
        model: 'gpt-4o-mini',
        backend: 'default',
        status: 200,
        stream: false,
        usage: { completion_tokens: 5, total_tokens: expect.any(Number) },
        latency_ms: expect.any(Number),
      },
    });
    expect(stream).toMatchObject({ kind: 'proxy', key_id: keyId, payload: { stream: true, status: 200 } });
    expect(blocked).toMatchObject({ kind: 'proxy.blocked', key_id: keyId, payload: { status: 403, model: 'gpt-4o', error: 'model_not_allowed' } });
    expect(unknown).toMatchObject({ kind: 'proxy.blocked', key_id: null, tenant_id: null, payload: { status: 401, error: 'invalid_api_key' } });

    const byKey = await allPages(gateway, `key_id=${keyId}`, 2);
    expect(byKey.map((r) => r.kind).sort()).toEqual(['admin.key.create', 'admin.key.update', 'proxy', 'proxy', 'proxy.blocked']);
    expect(byKey.slice(3).map((r) => r.kind)).toEqual(['admin.key.update', 'admin.key.create']);
    const update = byKey[3];
    expect(update).toMatchObject({ key_id: keyId, tenant_id: 'acme', request_id: null, payload: { actor: 'admin', key_id: keyId, changed: ['name'] } });
    expect(update.payload.after).toMatchObject({ name: 'audited key' });

    // Secrets: the virtual key, the upstream key and the admin tokens appear in no row and no export.
    const everything = JSON.stringify(await allPages(gateway, 'since=0', 1000));
    const exported = (await text(gateway, '/admin/audit/export?format=jsonl')).body + (await text(gateway, '/admin/audit/export?format=csv')).body;
    for (const secret of [token, UPSTREAM_KEY, ADMIN_TOKEN, READ_TOKEN]) {
      expect(everything).not.toContain(secret);
      expect(exported).not.toContain(secret);
    }
    expect(everything).toContain(keyId);
  });

  it('filters by since, until, kind (exact and prefix), key_id and tenant_id; pages return every row once', async () => {
    const window = `since=${BASE_TS}&until=${BASE_TS + 86_400_000}`;
    // [since, until, other filters, which planted rows match]; since/until default to the 2020 window.
    const cases: Array<[number | null, number | null, string, (r: AuditRecord) => boolean]> = [
      [null, null, '', () => true],
      [BASE_TS + 10_000, null, '', (r) => r.ts >= BASE_TS + 10_000],
      [null, BASE_TS + 10_000, '', (r) => r.ts < BASE_TS + 10_000],
      [BASE_TS + 5000, BASE_TS + 6000, '', (r) => r.ts === BASE_TS + 5000],
      [null, null, '&kind=proxy', (r) => r.kind === 'proxy'],
      [null, null, '&kind=proxy*', (r) => r.kind.startsWith('proxy')],
      [null, null, '&kind=admin.*', (r) => r.kind.startsWith('admin.')],
      [null, null, '&kind=admin*', (r) => r.kind.startsWith('admin')],
      [null, null, '&kind=admin.key.create', (r) => r.kind === 'admin.key.create'],
      [null, null, '&kind=nothing', () => false],
      [null, null, '&key_id=key-1', (r) => r.keyId === 'key-1'],
      [null, null, '&tenant_id=tenant-b', (r) => r.tenantId === 'tenant-b'],
      [null, null, '&tenant_id=tenant-a&kind=admin.*&key_id=key-2', (r) => r.tenantId === 'tenant-a' && r.kind.startsWith('admin.') && r.keyId === 'key-2'],
      [BASE_TS + 20_000, null, '&kind=proxy*', (r) => r.kind.startsWith('proxy') && r.ts >= BASE_TS + 20_000],
    ];
    for (const [since, until, filter, predicate] of cases) {
      const query = `since=${since ?? BASE_TS}&until=${until ?? BASE_TS + 86_400_000}${filter}`;
      const expected = planted.filter(predicate).filter((r) => r.ts >= (since ?? 0) && r.ts < (until ?? Infinity)).sort(newestFirst).map(wire);
      for (const limit of [7, 1000]) {
        const got = await allPages(gateway, query, limit);
        expect({ query, limit, rows: got }).toEqual({ query, limit, rows: expected });
      }
    }
    const single = await allPages(gateway, `${window}&kind=proxy.error`, 1);
    expect(single).toHaveLength(15);
  });

  it('keeps paging exact while new rows arrive', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let added = 0;
    do {
      const page: { body: { items: Array<{ id: string }>; next_cursor: string | null } } = await adminGet(
        gateway,
        `/admin/audit?since=${BASE_TS}&until=${BASE_TS + 86_400_000}&limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      seen.push(...page.body.items.map((r) => r.id));
      cursor = page.body.next_cursor;
      // A newer row (behind the pages already read, in newest-first order) must not shift the pages.
      await direct.audit.append([{ ...planted[0], id: `late-${added++}`, kind: 'late', tenantId: 'tenant-late', ts: BASE_TS + 50_000_000 + added }]);
    } while (cursor !== null);
    expect(seen).toEqual(planted.slice().sort(newestFirst).map((r) => r.id));
  });

  it('exports the rows oldest first as JSONL and CSV with an intact hash chain', async () => {
    const query = `since=${BASE_TS}&until=${BASE_TS + 86_400_000}&tenant_id=tenant-a`;
    const expected = planted.filter((r) => r.tenantId === 'tenant-a').map(wire);
    const jsonl = await text(gateway, `/admin/audit/export?format=jsonl&${query}`, READ_TOKEN);
    expect(jsonl.status).toBe(200);
    expect(jsonl.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    expect(jsonl.headers.get('content-disposition')).toMatch(/^attachment; filename="ditto-audit-\d{8}T\d{6}Z\.jsonl"$/);
    const lines = jsonl.body.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.map(({ prev_hash: _p, hash: _h, ...row }) => row)).toEqual(expected);
    expect(lines[0].prev_hash).toBe('0'.repeat(64));
    expect(lines[1].prev_hash).toBe(lines[0].hash);
    expect(await verifyExport([jsonl.body], 'jsonl')).toEqual({ ok: true, rows: expected.length, lastHash: lines.at(-1).hash });

    const csv = await text(gateway, `/admin/audit/export?format=csv&${query}`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8; header=present');
    expect(csv.body.split('\r\n')[0]).toBe('id,ts,kind,request_id,key_id,tenant_id,payload,prev_hash,hash');
    // Same rows, same chain: the hash does not depend on the format.
    expect(await verifyExport([csv.body], 'csv')).toEqual({ ok: true, rows: expected.length, lastHash: lines.at(-1).hash });

    const empty = await text(gateway, `/admin/audit/export?format=csv&since=${BASE_TS}&until=${BASE_TS + 1}&kind=nothing`);
    expect(empty.body).toBe('id,ts,kind,request_id,key_id,tenant_id,payload,prev_hash,hash\r\n');
  });

  it('exports CSV whose cells no spreadsheet evaluates (= + - @ tab CR get a leading quote), with the same verifiable chain as JSONL', async () => {
    // No '/' and no space: a tenant id may hold neither.
    const formula = '=HYPERLINK("evil.example","click")';
    // A key the admin API accepts (ids may start with @ or -, tenants with =), and a request id starting with -.
    const created = await admin(gateway, 'POST', '/admin/keys', { id: `@evil-${backend}`, tenant_id: formula });
    expect(created.status).toBe(201);
    const answer = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${created.body.token}`, 'content-type': 'application/json', 'x-request-id': '-cmd' },
      body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 2, messages: [{ role: 'user', content: formula }] }),
    });
    expect(answer.status).toBe(200);
    await answer.text();
    // And a row as a migration could bring it: every text field a formula.
    const ts = BASE_TS + 80_000_000;
    await direct.audit.append([{ id: '=1+1', ts, kind: '+kind', requestId: '\tcmd', keyId: formula, tenantId: '@x', payload: { note: formula } }]);
    await within(5000, async () => (await adminGet(gateway, `/admin/audit?kind=proxy&key_id=${encodeURIComponent(`@evil-${backend}`)}`)).body.items.length === 1);

    const query = `tenant_id=${encodeURIComponent(formula)}`;
    const csv = await text(gateway, `/admin/audit/export?format=csv&${query}`);
    const jsonl = await text(gateway, `/admin/audit/export?format=jsonl&${query}`);
    const planted = await text(gateway, `/admin/audit/export?format=csv&since=${ts}&until=${ts + 1}`);
    const records = csv.body.trimEnd().split('\r\n').slice(1);
    expect(records.length).toBeGreaterThanOrEqual(2); // admin.key.create and the proxy row
    // Every quoted text cell that would start with a formula character starts with ' instead.
    for (const record of [...records, ...planted.body.trimEnd().split('\r\n').slice(1)]) {
      expect(record).not.toMatch(/(^|,)"[=+\-@\t\r]/);
    }
    expect(records.join('\n')).toContain(`"'@evil-${backend}"`);
    expect(records.join('\n')).toContain(`"'=HYPERLINK(""evil.example"",""click"")"`);
    expect(planted.body).toContain(`"'=1+1",${ts},"'+kind","'\tcmd","'=HYPERLINK`);
    // JSONL keeps the stored values; both formats carry the same hashes and verify.
    const lines = jsonl.body.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.every((l) => l.tenant_id === formula)).toBe(true);
    expect(await verifyExport([csv.body], 'csv')).toEqual({ ok: true, rows: lines.length, lastHash: lines.at(-1).hash });
    expect(await verifyExport([planted.body], 'csv')).toMatchObject({ ok: true, rows: 1 });
    // And `npm run audit:verify` (the compiled CLI) agrees.
    requireBuild();
    const dir = mkdtempSync(path.join(tmpdir(), 'ditto-csv-'));
    try {
      writeFileSync(path.join(dir, 'export.csv'), csv.body);
      const { stdout } = await promisify(execFile)(process.execPath, [VERIFY_JS, path.join(dir, 'export.csv')]);
      expect(stdout).toBe(`OK: ${lines.length} row(s) verified (csv), last hash ${lines.at(-1).hash}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers 400 invalid_request naming the parameter for every bad query value', async () => {
    const bad: Array<[string, string]> = [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=ten', 'limit'],
      ['limit=1.5', 'limit'],
      ['since=-1', 'since'],
      ['since=yesterday', 'since'],
      ['until=1e400', 'until'],
      [`since=${BASE_TS}&until=${BASE_TS}`, 'until'],
      ['kind=', 'kind'],
      ['kind=a*b', 'kind'],
      ['kind=a%20b', 'kind'],
      ['kind=a&kind=b', 'kind'],
      ['key_id=a/b', 'key_id'],
      ['tenant_id=a%00b', 'tenant_id'],
      ['cursor=not-a-cursor', 'cursor'],
      [`cursor=${Buffer.from('[1,2]').toString('base64url')}`, 'cursor'],
      ['verbose=1', 'verbose'],
    ];
    for (const [query, param] of bad) {
      const r = await adminGet(gateway, `/admin/audit?${query}`);
      expect({ query, status: r.status }).toEqual({ query, status: 400 });
      expect(r.body.error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error' });
      expect(r.body.error.message).toContain(param);
      expect(JSON.stringify(r.body)).not.toMatch(/ at .*\.(ts|js):\d+/);
    }
    for (const query of ['format=xml', 'format=jsonl&limit=5', 'since=abc']) {
      const r = await adminGet(gateway, `/admin/audit/export?${query}`);
      expect({ query, status: r.status }).toEqual({ query, status: 400 });
      expect(r.body.error.code).toBe('invalid_request');
    }
    expect((await adminGet(gateway, '/admin/audit', 'wrong-token-0123456789')).status).toBe(401);
    expect((await admin(gateway, 'GET', '/admin/audit/export', undefined, null)).status).toBe(401);
  });

  it('reports written and dropped events on /metrics', async () => {
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/^ditto_audit_written_total [1-9]\d*$/m);
    expect(metrics).toMatch(/^ditto_audit_dropped_total\{reason="queue_full"\} 0$/m);
    expect(metrics).toMatch(/^ditto_audit_pruned_total 0$/m);
  });
});
