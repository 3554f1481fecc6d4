import { ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { AddressInfo, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { createServer as createTlsServer } from 'node:tls';
import * as path from 'node:path';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import WebSocket from 'ws';
import { AuditService } from '../../src/audit/audit.service';
import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { MockRealtime, startMockRealtime } from '../fixtures/mock-realtime';
import { requireBuild, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN, RunningGateway, admin, adminGet, freePort, startGateway, within } from './harness';
import { killRedis, startRedis } from './own-redis';

const UPSTREAM_KEY = 'sk-upstream-realtime-secret-0123456789';
const KEY = 'sk-ditto-realtime-key-0123456789abcdef';
const LIMITED_KEY = 'sk-ditto-realtime-limited-0123456789ab';
const MODEL = 'gpt-realtime';
/** USD per million tokens: integers per token, so costs are exact by hand. */
const PRICES = { [MODEL]: { input_per_mtok_usd: 4, output_per_mtok_usd: 16, cached_input_per_mtok_usd: 1 } };
/** REALTIME_RESPONSE_RESERVE_TOKENS of the suite's gateway. */
const RESERVE = 40;

interface Client {
  ws: WebSocket;
  /** Every message received: text parsed as JSON, binary as Buffers. */
  messages: any[];
  /** Resolves with the first message (already received or not) of `type`. */
  next(type: string): Promise<any>;
  closed: Promise<{ code: number; reason: string }>;
}

/** Opens a realtime session through the gateway; rejects when the handshake is refused. */
function connect(base: string, query: string, options: { headers?: Record<string, string>; protocols?: string[] } = {}): Promise<Client> {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/realtime${query}`, options.protocols ?? [], { headers: options.headers });
  const messages: any[] = [];
  const waiters: Array<{ type: string; resolve: (m: any) => void }> = [];
  ws.on('message', (data: Buffer, isBinary) => {
    const message = isBinary ? Buffer.from(data) : JSON.parse(data.toString('utf8'));
    messages.push(message);
    for (const waiter of waiters.filter((w) => message?.type === w.type)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(message);
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
  const next = (type: string) => {
    const seen = messages.find((m) => m?.type === type);
    return seen ? Promise.resolve(seen) : new Promise<any>((resolve) => waiters.push({ type, resolve }));
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, messages, next, closed }));
    ws.once('unexpected-response', (_req, response) => reject(new Error(`refused: ${response.statusCode}`)));
    ws.once('error', reject);
  });
}

/** A handshake the gateway refuses: its HTTP status, headers and JSON body. */
function refused(base: string, query: string, options: { headers?: Record<string, string>; protocols?: string[] } = {}): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/realtime${query}`, options.protocols ?? [], { headers: options.headers });
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the handshake was accepted')));
    ws.once('unexpected-response', (_req, response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text ? JSON.parse(text) : null }));
    });
    ws.once('error', () => undefined);
  });
}

/** A raw upgrade request (any protocol, any path): the status line and body of the answer. */
function rawUpgrade(base: string, target: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path: target, headers: { connection: 'upgrade', ...headers } });
    req.on('response', (response) => {
      let text = '';
      response.on('data', (c: Buffer) => (text += c.toString('utf8')));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
    });
    req.on('upgrade', () => reject(new Error('upgraded')));
    req.on('error', reject);
    req.end();
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

const OPENSSL = spawnSync('openssl', ['version']).status === 0;

/**
 * TLS in front of the gateway, as a load balancer gives it in production: OpenAI's realtime client
 * only speaks wss://. A throwaway self-signed certificate for 127.0.0.1 (openssl), trusted by the test
 * client alone.
 */
async function tlsFront(target: string, dir: string): Promise<{ url: string; ca: string; close(): Promise<void> }> {
  const key = path.join(dir, 'tls.key');
  const cert = path.join(dir, 'tls.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const { hostname, port } = new URL(target);
  const server = createTlsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (front) => {
    const back = tcpConnect(Number(port), hostname);
    front.pipe(back).pipe(front);
    front.on('error', () => back.destroy());
    back.on('error', () => front.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ca: readFileSync(cert, 'utf8'),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function auditRows(gateway: RunningGateway) {
  await gateway.app.get(AuditService).flush();
  return (await gateway.app.get(AuditLogRepository).query({}, 1000, null)).items;
}

async function scope(gateway: RunningGateway, ledger: 'budgets' | 'costs', name: string): Promise<any> {
  const answer = await adminGet(gateway, `/admin/${ledger}/${encodeURIComponent(name)}`);
  expect(answer.status).toBe(200);
  return answer.body;
}

async function createKey(gateway: RunningGateway, body: Record<string, unknown>): Promise<string> {
  const created = await admin(gateway, 'POST', '/admin/keys', body);
  expect(created.status).toBe(201);
  return created.body.token as string;
}

describe('realtime WebSocket sessions (/v1/realtime, e2e)', () => {
  let upstream: MockRealtime;
  let second: MockRealtime;
  let gateway: RunningGateway;
  let dir: string;

  beforeAll(async () => {
    upstream = await startMockRealtime();
    second = await startMockRealtime();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-realtime-'));
    const config = {
      backends: [
        { name: 'primary', base_url: upstream.url, api_key: '${UPSTREAM_KEY}', timeout_ms: 2000, model_map: { 'gpt-realtime-alias': MODEL } },
        { name: 'dead', base_url: 'http://127.0.0.1:1/v1', timeout_ms: 1000 },
        { name: 'second', base_url: second.url, timeout_ms: 2000 },
      ],
      router: { default_backends: ['primary'], rules: [{ model: 'fallback-*', backends: ['dead', 'second'] }] },
      virtual_keys: [
        { id: 'rt', token: KEY, tenant_id: 'acme' },
        { id: 'rt-limited', token: LIMITED_KEY, models: ['gpt-realtime-mini'] },
      ],
      pricing: PRICES,
    };
    writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify(config));
    gateway = await startGateway({
      SQLITE_PATH: path.join(dir, 'ditto.sqlite'),
      GATEWAY_CONFIG: path.join(dir, 'gateway.json'),
      UPSTREAM_KEY,
      ADMIN_TOKEN,
      AUDIT_FLUSH_MS: '20',
      REALTIME_RESPONSE_RESERVE_TOKENS: String(RESERVE),
    });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    await second?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.options = {};
  });

  it('upgrades with a Bearer key and relays text and binary messages both ways to the routed backend', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: { ...bearer(KEY), 'openai-beta': 'realtime=v1' } });
    expect((await client.next('session.created')).session.model).toBe(MODEL);
    client.ws.send(JSON.stringify({ type: 'session.update', session: { instructions: 'be brief' } }));
    expect((await client.next('session.updated')).session.instructions).toBe('be brief');
    const audio = Buffer.from([0, 1, 2, 255, 254, 253]);
    client.ws.send(audio);
    await within(2000, () => client.messages.some((m) => Buffer.isBuffer(m)));
    expect(client.messages.find((m) => Buffer.isBuffer(m))).toEqual(audio);

    const session = upstream.sessions.at(-1)!;
    expect(session.received[0]).toEqual({ type: 'session.update', session: { instructions: 'be brief' } });
    expect(session.received[1]).toEqual(audio);
    // The backend's key and the allow-listed headers; never the client's key.
    expect(session.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(session.headers['openai-beta']).toBe('realtime=v1');
    expect(session.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(session.headers)).not.toContain(KEY);
    client.ws.close();
    await client.closed;
  });

  it('maps the model through the backend\'s model_map and passes the rest of the query on', async () => {
    const client = await connect(gateway.url, '?model=gpt-realtime-alias&foo=bar', { headers: bearer(KEY) });
    await client.next('session.created');
    expect(new URL(upstream.sessions.at(-1)!.url, 'http://x').searchParams.toString()).toBe(`model=${MODEL}&foo=bar`);
    client.ws.close();
    await client.closed;
  });

  it('takes a browser\'s key from the openai-insecure-api-key subprotocol, answers `realtime`, and keeps the key from the upstream', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { protocols: ['realtime', `openai-insecure-api-key.${KEY}`, 'openai-beta.realtime-v1'] });
    expect(client.ws.protocol).toBe('realtime');
    await client.next('session.created');
    const session = upstream.sessions.at(-1)!;
    expect(String(session.headers['sec-websocket-protocol']).split(/\s*,\s*/)).toEqual(['realtime', 'openai-beta.realtime-v1']);
    expect(session.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(session.headers)).not.toContain(KEY);
    client.ws.close();
    await client.closed;
  });

  it('refuses a handshake without a valid key, for a model outside the allow-list or without ?model=, as an HTTP error, upgrading nothing', async () => {
    const before = upstream.handshakes.length;
    const none = await refused(gateway.url, `?model=${MODEL}`);
    expect(none.status).toBe(401);
    expect(none.body.error).toMatchObject({ code: 'invalid_api_key', type: 'invalid_request_error' });
    expect(none.headers['x-request-id']).toBeDefined();
    expect((await refused(gateway.url, `?model=${MODEL}`, { headers: bearer('sk-ditto-not-a-key-000000000000') })).status).toBe(401);
    expect((await refused(gateway.url, `?model=${MODEL}`, { protocols: ['realtime', 'openai-insecure-api-key.sk-ditto-wrong-00000000000'] })).status).toBe(401);
    const model = await refused(gateway.url, `?model=${MODEL}`, { headers: bearer(LIMITED_KEY) });
    expect(model.status).toBe(403);
    expect(model.body.error).toMatchObject({ code: 'model_not_allowed', param: 'model' });
    const noModel = await refused(gateway.url, '', { headers: bearer(KEY) });
    expect(noModel.status).toBe(400);
    expect(noModel.body.error.param).toBe('model');
    expect(upstream.handshakes.length).toBe(before);
    // Refusals are audited like refused requests.
    const rows = await auditRows(gateway);
    expect(rows.filter((r) => r.kind === 'proxy.blocked' && (r.payload as any).path === '/v1/realtime').length).toBeGreaterThanOrEqual(5);
  });

  it('refuses every other upgrade: another protocol (400), another path (404), a browser origin while CORS is off (403)', async () => {
    const ws = { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13', ...bearer(KEY) };
    const h2c = await rawUpgrade(gateway.url, '/v1/models', { upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQCAAAAAAIAAAAA' });
    expect(h2c.status).toBe(400);
    expect(h2c.body.error.message).toContain('unsupported upgrade');
    const elsewhere = await rawUpgrade(gateway.url, '/v1/chat/completions', { upgrade: 'websocket', ...ws });
    expect(elsewhere.status).toBe(404);
    expect((await rawUpgrade(gateway.url, '/health', { upgrade: 'websocket', ...ws })).status).toBe(404);
    const dotted = await rawUpgrade(gateway.url, '/v1/x/../realtime?model=gpt-realtime', { upgrade: 'websocket', ...ws });
    expect(dotted.status).toBe(400);
    const browser = await refused(gateway.url, `?model=${MODEL}`, { headers: { ...bearer(KEY), origin: 'https://evil.example' } });
    expect(browser.status).toBe(403);
    expect(browser.body.error.code).toBe('origin_not_allowed');
    // A plain GET of the path is no session: 426 (upgrade: websocket), never forwarded as a request.
    const plainBefore = upstream.plainRequests.length;
    const plain = await fetch(`${gateway.url}/v1/realtime?model=${MODEL}`, { headers: bearer(KEY) });
    expect(plain.status).toBe(426);
    expect(plain.headers.get('upgrade')).toBe('websocket');
    expect(((await plain.json()) as { error: unknown }).error).toMatchObject({ code: 'upgrade_required', type: 'invalid_request_error' });
    expect((await fetch(`${gateway.url}/v1/realtime`, { method: 'POST', headers: { ...bearer(KEY), 'content-type': 'application/json' }, body: '{}' })).status).toBe(405);
    expect(upstream.plainRequests.length).toBe(plainBefore);
  });

  it('charges each response.done\'s usage: budgets spent equal the usage reported, nothing stays reserved, one audit event per session', async () => {
    const token = await createKey(gateway, { id: 'rt-budget', models: [MODEL], budget: { total_tokens: 10_000, total_usd_micros: 1_000_000 } });
    upstream.options = { usage: [{ input_tokens: 20, output_tokens: 10 }, { input_tokens: 30, output_tokens: 5, cached_tokens: 8 }, { input_tokens: 7, output_tokens: 3 }] };
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(token) });
    await client.next('session.created');
    // Held while the session is open: the next response's reservation.
    expect((await scope(gateway, 'budgets', 'key:rt-budget')).reserved_tokens).toBe(RESERVE);
    for (let i = 0; i < 3; i++) {
      client.ws.send(JSON.stringify({ type: 'response.create' }));
      await within(2000, () => client.messages.filter((m) => m?.type === 'response.done').length === i + 1);
    }
    const done = client.messages.filter((m) => m?.type === 'response.done');
    expect(done.map((m) => m.response.usage.total_tokens)).toEqual([30, 35, 10]);
    await within(2000, async () => (await scope(gateway, 'budgets', 'key:rt-budget')).spent_tokens === 75);
    client.ws.close(1000, 'done');
    expect(await client.closed).toEqual({ code: 1000, reason: 'done' });
    await within(2000, async () => (await scope(gateway, 'budgets', 'key:rt-budget')).reserved_tokens === 0);
    expect(await scope(gateway, 'budgets', 'key:rt-budget')).toMatchObject({ spent_tokens: 75, reserved_tokens: 0 });
    // (20+30-8+7) input at 4, 8 cached at 1, 18 output at 16 (micro-USD per token).
    expect(await scope(gateway, 'costs', 'key:rt-budget')).toMatchObject({ spent_usd_micros: 49 * 4 + 8 * 1 + 18 * 16, reserved_usd_micros: 0 });

    await within(2000, async () => (await auditRows(gateway)).some((r) => r.keyId === 'rt-budget' && r.kind === 'proxy'));
    const rows = (await auditRows(gateway)).filter((r) => r.keyId === 'rt-budget' && r.kind.startsWith('proxy'));
    expect(rows).toHaveLength(1);
    expect(rows[0].payload).toMatchObject({
      method: 'GET',
      path: '/v1/realtime',
      model: MODEL,
      backend: 'primary',
      status: 101,
      usage: { prompt_tokens: 57, completion_tokens: 18, cached_tokens: 8, total_tokens: 75 },
      charged: { tokens: 75, usd_micros: 49 * 4 + 8 + 18 * 16, basis: 'usage' },
      realtime: { responses: 3, closed_by: 'client', close_code: 1000 },
    });
  });

  it('refuses a session whose budget cannot hold one response (402), and closes one that runs out (budget_exceeded, 1008) having charged all usage', async () => {
    const poor = await createKey(gateway, { id: 'rt-poor', budget: { total_tokens: RESERVE - 1 } });
    const refusal = await refused(gateway.url, `?model=${MODEL}`, { headers: bearer(poor) });
    expect(refusal.status).toBe(402);
    expect(refusal.body.error.code).toBe('budget_exceeded');

    // Room for three reservations of 40 after responses of 30: the third response.done leaves 10.
    const token = await createKey(gateway, { id: 'rt-runs-out', budget: { total_tokens: 100 } });
    // `type` last in the upstream's events: usage is found whatever the member order.
    upstream.options = { usage: [{ input_tokens: 20, output_tokens: 10 }], typeLast: true };
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(token) });
    await client.next('session.created');
    for (let i = 0; i < 3; i++) {
      client.ws.send(JSON.stringify({ type: 'response.create' }));
      await within(2000, () => client.messages.filter((m) => m?.type === 'response.done').length === i + 1);
    }
    const error = await client.next('error');
    expect(error.error).toMatchObject({ type: 'insufficient_quota', code: 'budget_exceeded' });
    expect((await client.closed).code).toBe(1008);
    const session = upstream.sessions.at(-1)!;
    await within(2000, () => session.closed !== null);
    expect(session.closed!.code).toBe(1008);
    await within(2000, async () => (await scope(gateway, 'budgets', 'key:rt-runs-out')).reserved_tokens === 0);
    expect(await scope(gateway, 'budgets', 'key:rt-runs-out')).toMatchObject({ spent_tokens: 90, reserved_tokens: 0 });
  });

  it('a response without usage is charged the reservation, and so is a session closed mid-response; a session closed between responses is charged nothing more', async () => {
    const token = await createKey(gateway, { id: 'rt-estimates', budget: { total_tokens: 10_000 } });
    upstream.options = { omitUsage: true };
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(token) });
    await client.next('session.created');
    client.ws.send(JSON.stringify({ type: 'response.create' }));
    await client.next('response.done');
    client.ws.close();
    await client.closed;
    await within(2000, async () => (await scope(gateway, 'budgets', 'key:rt-estimates')).reserved_tokens === 0);
    expect((await scope(gateway, 'budgets', 'key:rt-estimates')).spent_tokens).toBe(RESERVE);

    upstream.options = { holdResponses: true };
    const mid = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(token) });
    await mid.next('session.created');
    mid.ws.send(JSON.stringify({ type: 'response.create' }));
    await mid.next('response.created');
    mid.ws.close();
    await mid.closed;
    await within(2000, async () => (await scope(gateway, 'budgets', 'key:rt-estimates')).reserved_tokens === 0);
    expect((await scope(gateway, 'budgets', 'key:rt-estimates')).spent_tokens).toBe(2 * RESERVE);
  });

  it('closes the upstream when the client closes, and the client when the upstream closes, with the same code and reason', async () => {
    const a = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await a.next('session.created');
    const upA = upstream.sessions.at(-1)!;
    a.ws.close(4001, 'client says bye');
    expect(await a.closed).toEqual({ code: 4001, reason: 'client says bye' });
    await within(2000, () => upA.closed !== null);
    expect(upA.closed).toEqual({ code: 4001, reason: 'client says bye' });

    const b = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await b.next('session.created');
    const upB = upstream.sessions.at(-1)!;
    upB.socket.close(4002, 'upstream says bye');
    expect(await b.closed).toEqual({ code: 4002, reason: 'upstream says bye' });

    // An upstream that vanishes without a close frame: the client is told so (1011), not left hanging.
    const c = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await c.next('session.created');
    upstream.sessions.at(-1)!.socket.terminate();
    expect(await c.closed).toEqual({ code: 1011, reason: 'upstream connection lost' });

    // A client that vanishes: the upstream is closed (1011), not left open.
    const d = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await d.next('session.created');
    const upD = upstream.sessions.at(-1)!;
    d.ws.terminate();
    await within(2000, () => upD.closed !== null);
    expect(upD.closed).toEqual({ code: 1011, reason: 'client connection lost' });
  });

  it('falls back to the next backend when one cannot be reached; passes an upstream\'s own refusal on', async () => {
    const client = await connect(gateway.url, '?model=fallback-rt', { headers: bearer(KEY) });
    await client.next('session.created');
    expect(second.sessions.at(-1)!.url).toBe('/v1/realtime?model=fallback-rt');
    client.ws.close();
    await client.closed;

    upstream.options = { refuseStatus: 400 };
    const answer = await refused(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    expect(answer.status).toBe(400);
    expect(answer.body.error.code).toBe('mock_refusal');
    expect(answer.headers['x-ditto-backend']).toBe('primary');
  });

  it('does not forward a session.update to another model (the client gets an error event), and keeps the session', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await client.next('session.created');
    const before = upstream.sessions.at(-1)!.received.length;
    client.ws.send(JSON.stringify({ type: 'session.update', event_id: 'evt_1', session: { model: 'gpt-5-pro' } }));
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'model_not_allowed', param: 'session.model', event_id: 'evt_1' });
    client.ws.send(JSON.stringify({ type: 'session.update', session: { model: MODEL, instructions: 'same model' } }));
    await client.next('session.updated');
    expect(upstream.sessions.at(-1)!.received.length).toBe(before + 1);
    client.ws.close();
    await client.closed;
  });

  (OPENSSL ? it : it.skip)('works unchanged with the OpenAI SDK\'s realtime client (OpenAIRealtimeWS, wss:// through TLS in front)', async () => {
    const front = await tlsFront(gateway.url, dir);
    try {
      const openai = new OpenAI({ apiKey: KEY, baseURL: `${front.url}/v1` });
      const rt = new OpenAIRealtimeWS({ model: MODEL, options: { ca: front.ca } }, openai);
      const errors: unknown[] = [];
      rt.on('error', (error) => errors.push(error));
      const done = new Promise<any>((resolve) => rt.on('response.done', resolve));
      rt.on('session.created', () => rt.send({ type: 'response.create' }));
      const response = await done;
      expect(response.response.usage.total_tokens).toBe(30);
      const closed = new Promise<number>((resolve) => rt.socket.on('close', (code: number) => resolve(code)));
      rt.close();
      expect(await closed).toBe(1000);
      expect(errors).toEqual([]);
      expect(upstream.sessions.at(-1)!.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    } finally {
      await front.close();
    }
  });

  it('never writes a key into its logs', async () => {
    await new Promise((r) => setTimeout(r, 50));
    const text = JSON.stringify(gateway.logs);
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(UPSTREAM_KEY);
    expect(text).not.toContain('openai-insecure-api-key');
  });
});

describe('realtime sessions: idle timeout, message bound, rate limit, shutdown (e2e)', () => {
  let upstream: MockRealtime;
  let gateway: RunningGateway;
  let dir: string;
  let closed = false;

  beforeAll(async () => {
    upstream = await startMockRealtime();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-realtime-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [{ name: 'primary', base_url: upstream.url, timeout_ms: 2000 }],
        virtual_keys: [
          { id: 'rt', token: KEY },
          { id: 'rt-rpm', token: LIMITED_KEY, limits: { rpm: 1 } },
        ],
      }),
    );
    gateway = await startGateway({
      STORAGE_BACKEND: 'memory',
      GATEWAY_CONFIG: path.join(dir, 'gateway.json'),
      REALTIME_IDLE_TIMEOUT_MS: '1000',
      REALTIME_MAX_MESSAGE_BYTES: '2048',
    });
  });

  afterAll(async () => {
    if (!closed) await gateway?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('closes an idle session on both sides (1001)', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await client.next('session.created');
    const started = Date.now();
    expect(await client.closed).toEqual({ code: 1001, reason: 'idle timeout' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    const session = upstream.sessions.at(-1)!;
    await within(2000, () => session.closed !== null);
    expect(session.closed!.code).toBe(1001);
  });

  it('closes a session that sends a message over REALTIME_MAX_MESSAGE_BYTES (1009), upstream too', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await client.next('session.created');
    client.ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: 'A'.repeat(4096) }));
    expect((await client.closed).code).toBe(1009);
    const session = upstream.sessions.at(-1)!;
    await within(2000, () => session.closed !== null);
    expect(session.closed!.code).toBe(1009);
    expect(session.received).toHaveLength(0);
  });

  it('counts a session as a request for the key\'s rpm (429 with the rate-limit headers)', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(LIMITED_KEY) });
    await client.next('session.created');
    const second = await refused(gateway.url, `?model=${MODEL}`, { headers: bearer(LIMITED_KEY) });
    expect(second.status).toBe(429);
    expect(second.headers['x-ratelimit-limit-requests']).toBe('1');
    client.ws.close();
    await client.closed;
  });

  it('tells open sessions the server is going away (1001) when it shuts down', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await client.next('session.created');
    const session = upstream.sessions.at(-1)!;
    closed = true;
    await gateway.close();
    expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    await within(2000, () => session.closed !== null);
    expect(session.closed!.code).toBe(1001);
  });
});

describe('realtime sessions: a quiet session keeps its reservation past RESERVATION_TTL_SECS (e2e)', () => {
  let upstream: MockRealtime;
  let gateway: RunningGateway;
  let dir: string;

  beforeAll(async () => {
    upstream = await startMockRealtime();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-realtime-'));
    writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ backends: [{ name: 'primary', base_url: upstream.url, timeout_ms: 2000 }] }));
    // Reservations older than 10 s are reaped (checked every 2.5 s); the session renews its own every 5 s.
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), ADMIN_TOKEN, RESERVATION_TTL_SECS: '10', REALTIME_RESPONSE_RESERVE_TOKENS: String(RESERVE) });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('renews the held reservation, so the reaper never releases it, and charges the next response its usage', async () => {
    const token = await createKey(gateway, { id: 'rt-quiet', budget: { total_tokens: 10_000 } });
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(token) });
    await client.next('session.created');
    await new Promise((r) => setTimeout(r, 14_000));
    expect(await scope(gateway, 'budgets', 'key:rt-quiet')).toMatchObject({ reserved_tokens: RESERVE, spent_tokens: 0 });
    client.ws.send(JSON.stringify({ type: 'response.create' }));
    await client.next('response.done');
    client.ws.close();
    await client.closed;
    await within(2000, async () => (await scope(gateway, 'budgets', 'key:rt-quiet')).reserved_tokens === 0);
    expect((await scope(gateway, 'budgets', 'key:rt-quiet')).spent_tokens).toBe(30);
    expect(gateway.logs.filter((l) => /reaped|late charge/.test(String(l.msg)))).toEqual([]);
  }, 25_000);
});

describe('realtime sessions at SIGTERM (compiled gateway, child process, e2e)', () => {
  let upstream: MockRealtime;
  let dir: string;

  beforeAll(async () => {
    requireBuild();
    upstream = await startMockRealtime();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-realtime-child-'));
  });

  afterAll(async () => {
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps serving a session through the drain, then closes it on both sides with 1001 and exits 0', async () => {
    writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ backends: [{ name: 'primary', base_url: upstream.url }], virtual_keys: [{ id: 'rt', token: KEY }] }));
    const child = await startChildGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), SHUTDOWN_GRACE_MS: '800' }, dir);
    const client = await connect(child.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await client.next('session.created');
    const session = upstream.sessions.at(-1)!;
    child.process.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    // Draining: the session still works.
    client.ws.send(JSON.stringify({ type: 'response.create' }));
    await client.next('response.done');
    expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    await within(2000, () => session.closed !== null);
    expect(session.closed!.code).toBe(1001);
    expect(await child.exited).toBe(0);
    // Its audit event was written before the exit (one access line per session, with its usage).
    expect(child.logs.some((l) => l.context === 'Access' && l.msg === 'GET /v1/realtime 101' && l.tokens === 30)).toBe(true);
  }, 20_000);
});

describe('realtime sessions when the budget store goes away (e2e, own redis-server)', () => {
  let redis: ChildProcess | undefined;
  let upstream: MockRealtime;
  let gateway: RunningGateway;
  let dir: string;

  beforeAll(async () => {
    const port = await freePort();
    redis = await startRedis(port);
    upstream = await startMockRealtime();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-realtime-'));
    writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ backends: [{ name: 'primary', base_url: upstream.url, timeout_ms: 2000 }], virtual_keys: [{ id: 'rt', token: KEY }] }));
    gateway = await startGateway({
      STORAGE_BACKEND: 'redis',
      REDIS_URL: `redis://127.0.0.1:${port}`,
      REDIS_PREFIX: 'realtime-outage',
      REDIS_TIMEOUT_MS: '300',
      STORAGE_FALLBACK: 'false',
      GATEWAY_CONFIG: path.join(dir, 'gateway.json'),
      AUDIT_RETENTION_SECS: '0',
    });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    if (redis) await killRedis(redis);
    rmSync(dir, { recursive: true, force: true });
  });

  it('closes the session (1011, an api_error event) when the next response cannot be reserved: it never runs unbudgeted', async () => {
    const client = await connect(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) });
    await client.next('session.created');
    await killRedis(redis!);
    redis = undefined;
    client.ws.send(JSON.stringify({ type: 'response.create' }));
    await client.next('response.done');
    const error = await client.next('error');
    expect(error.error).toMatchObject({ type: 'api_error', code: 'storage_unavailable' });
    expect(await client.closed).toEqual({ code: 1011, reason: 'budget store unavailable' });
    const session = upstream.sessions.at(-1)!;
    await within(2000, () => session.closed !== null);
    expect(session.closed!.code).toBe(1011);
    // A new session is refused before any upgrade.
    expect((await refused(gateway.url, `?model=${MODEL}`, { headers: bearer(KEY) })).status).toBe(503);
  }, 15_000);
});
