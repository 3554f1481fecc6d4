import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import WebSocket from 'ws';
import { MockRealtime, attachMockRealtime } from '../fixtures/mock-realtime';
import { FaithfulMock, startFaithfulMock } from '../fixtures/openai-faithful-mock';
import { ADMIN_TOKEN, RunningGateway, admin, startGateway } from './harness';

/**
 * Issue 16, item 3: every path that names a model is governed by the key's allow-list (JSON `model`,
 * the multipart `model` field, `/v1/models/{id}`, realtime `?model=`), per-key `allowed_routes`, and
 * batch creation refused for governed keys unless their routes name batches. Every refusal is checked
 * for its status and code, and for never reaching the upstream (the mock records each request it got
 * whole, and each realtime handshake).
 */
jest.setTimeout(20_000);

const UPSTREAM_KEY = 'sk-upstream-allow-lists-0123456789';
const KEYS = {
  /** A model allow-list. */
  mini: 'sk-ditto-allow-mini-0123456789abcdef',
  /** Nothing but a key. */
  open: 'sk-ditto-allow-open-0123456789abcdef',
  /** A token budget of its own. */
  budgeted: 'sk-ditto-allow-budgeted-0123456789ab',
  /** A tenant whose scope has a USD limit. */
  tenant: 'sk-ditto-allow-tenant-0123456789abcd',
  /** A model allow-list, and routes that name batches and realtime credentials explicitly. */
  batcher: 'sk-ditto-allow-batcher-0123456789abc',
  /** Routes: chat completions only. */
  chat: 'sk-ditto-allow-chat-only-0123456789ab',
};
const ALLOWED = ['gpt-4o-mini', 'text-embedding-3-small', 'gpt-4o-mini-transcribe', 'gpt-image-1', 'gpt-realtime-mini', 'ft:gpt-4o-mini:acme::abc123'];

const B = 'allow-lists-boundary-42';
type Part = { name: string; value: string } | { name: string; file: Buffer; filename: string };

function multipart(parts: Part[]): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const head = 'file' in part ? `; filename="${part.filename}"\r\nContent-Type: application/octet-stream` : '';
    chunks.push(Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="${part.name}"${head}\r\n\r\n`));
    chunks.push('file' in part ? part.file : Buffer.from(part.value));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${B}--\r\n`));
  return Buffer.concat(chunks);
}

interface Answer {
  status: number;
  body: any;
}

describe('allow-lists: every path that names a model, allowed_routes, batches (e2e)', () => {
  let upstream: FaithfulMock;
  let realtime: MockRealtime;
  let gateway: RunningGateway;
  let dir: string;

  beforeAll(async () => {
    upstream = await startFaithfulMock();
    realtime = attachMockRealtime(upstream.server);
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-allow-lists-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [{ name: 'main', base_url: upstream.url, api_key: '${UPSTREAM_KEY}', timeout_ms: 5000 }],
        virtual_keys: [
          { id: 'mini', token: KEYS.mini, models: ALLOWED },
          { id: 'open', token: KEYS.open },
          { id: 'budgeted', token: KEYS.budgeted, budget: { total_tokens: 1_000_000 } },
          { id: 'tenant', token: KEYS.tenant, tenant_id: 'acme' },
          { id: 'batcher', token: KEYS.batcher, models: ALLOWED, allowed_routes: ['/v1/files', '/v1/batches/**', '/v1/realtime/**'] },
          { id: 'chat', token: KEYS.chat, allowed_routes: ['/v1/chat/completions'] },
        ],
      }),
    );
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), UPSTREAM_KEY, ADMIN_TOKEN });
    expect((await admin(gateway, 'PUT', '/admin/costs/tenant:acme', { limit_usd_micros: 50_000_000 })).status).toBe(200);
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sends one request; returns the answer and how many requests the upstream received whole meanwhile. */
  async function call(key: string, method: string, target: string, body?: Buffer | object, type?: string): Promise<Answer & { reached: number }> {
    const before = upstream.requests.length;
    const headers: Record<string, string> = { authorization: `Bearer ${key}` };
    let payload: Buffer | string | undefined;
    if (Buffer.isBuffer(body)) {
      payload = body;
      headers['content-type'] = type ?? `multipart/form-data; boundary=${B}`;
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    const response = await fetch(`${gateway.url}${target}`, { method, headers, body: payload });
    const text = await response.text();
    let parsed: any = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: kept as text
    }
    // A refused request never arrives; give an allowed one's record a moment (the mock records on 'end').
    return { status: response.status, body: parsed, reached: upstream.requests.length - before };
  }

  function realtimeHandshake(key: string, model: string): Promise<Answer & { reached: number }> {
    const before = realtime.handshakes.length;
    const ws = new WebSocket(`${gateway.url.replace(/^http/, 'ws')}/v1/realtime?model=${encodeURIComponent(model)}`, ['realtime'], { headers: { authorization: `Bearer ${key}` } });
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.close();
        resolve({ status: 101, body: null, reached: realtime.handshakes.length - before });
      });
      ws.once('unexpected-response', (_req, response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text), reached: realtime.handshakes.length - before }));
      });
      ws.once('error', (error) => (ws.readyState === WebSocket.CLOSED ? undefined : reject(error)));
    });
  }

  const audio = Buffer.alloc(48_000, 1);
  const png = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(2048, 2)]);

  /** Each path that names a model, sent with `model`: what an allowed model gets, and the refusal of a denied one. */
  const TABLE: Array<{ row: string; send: (model: string) => Promise<Answer & { reached: number }>; allowed: string; denied: string; ok: number; refused: [number, string] }> = [
    { row: 'JSON chat completions', send: (m) => call(KEYS.mini, 'POST', '/v1/chat/completions', { model: m, messages: [{ role: 'user', content: 'hi' }] }), allowed: 'gpt-4o-mini', denied: 'gpt-4o', ok: 200, refused: [403, 'model_not_allowed'] },
    { row: 'JSON embeddings', send: (m) => call(KEYS.mini, 'POST', '/v1/embeddings', { model: m, input: 'hi' }), allowed: 'text-embedding-3-small', denied: 'text-embedding-3-large', ok: 200, refused: [403, 'model_not_allowed'] },
    { row: 'JSON responses', send: (m) => call(KEYS.mini, 'POST', '/v1/responses', { model: m, input: 'hi' }), allowed: 'gpt-4o-mini', denied: 'o3', ok: 200, refused: [403, 'model_not_allowed'] },
    {
      row: 'multipart transcription (model field)',
      send: (m) => call(KEYS.mini, 'POST', '/v1/audio/transcriptions', multipart([{ name: 'model', value: m }, { name: 'file', file: audio, filename: 'a.wav' }])),
      allowed: 'gpt-4o-mini-transcribe',
      denied: 'whisper-1',
      ok: 200,
      refused: [403, 'model_not_allowed'],
    },
    {
      row: 'multipart image edit (model field)',
      send: (m) => call(KEYS.mini, 'POST', '/v1/images/edits', multipart([{ name: 'model', value: m }, { name: 'prompt', value: 'a hat' }, { name: 'image', file: png, filename: 'a.png' }])),
      allowed: 'gpt-image-1',
      denied: 'dall-e-2',
      ok: 200,
      refused: [403, 'model_not_allowed'],
    },
    { row: 'GET /v1/models/{id}', send: (m) => call(KEYS.mini, 'GET', `/v1/models/${encodeURIComponent(m)}`), allowed: 'gpt-4o-mini', denied: 'gpt-4o', ok: 200, refused: [404, 'model_not_found'] },
    { row: 'DELETE /v1/models/{id} (fine-tuned)', send: (m) => call(KEYS.mini, 'DELETE', `/v1/models/${encodeURIComponent(m)}`), allowed: 'ft:gpt-4o-mini:acme::abc123', denied: 'ft:gpt-4o-mini:other::xyz789', ok: 200, refused: [404, 'model_not_found'] },
    { row: 'realtime ?model=', send: (m) => realtimeHandshake(KEYS.mini, m), allowed: 'gpt-realtime-mini', denied: 'gpt-realtime', ok: 101, refused: [403, 'model_not_allowed'] },
  ];

  describe.each(TABLE)('$row', ({ send, allowed, denied, ok, refused }) => {
    it(`allowed model: ${ok}, forwarded`, async () => {
      const answer = await send(allowed);
      expect([answer.status, answer.reached]).toEqual([ok, 1]);
    });

    it(`denied model: ${refused.join(' ')}, never forwarded`, async () => {
      const answer = await send(denied);
      expect([answer.status, answer.body?.error?.code, answer.reached]).toEqual([...refused, 0]);
      expect(answer.body.error.message).toContain(denied);
      expect(JSON.stringify(answer.body)).not.toContain(KEYS.mini);
    });
  });

  describe('what cannot be told is refused (fail closed)', () => {
    it('a model id in the path, however it is spelled', async () => {
      for (const target of ['/v1/models/gpt%2D4o', '/v1/Models/gpt-4o', '/v1/models/meta-llama/Llama-3.1-8B']) {
        const answer = await call(KEYS.mini, 'GET', target);
        expect([target, answer.status, answer.body.error?.code, answer.reached]).toEqual([target, 404, 'model_not_found', 0]);
      }
    });

    it('an upload whose model comes after the file, or not at all: 400 for a key with an allow-list, forwarded for a key without', async () => {
      for (const parts of [
        [{ name: 'file', file: audio, filename: 'a.wav' }, { name: 'model', value: 'gpt-4o-mini-transcribe' }],
        [{ name: 'file', file: audio, filename: 'a.wav' }],
      ]) {
        const refused = await call(KEYS.mini, 'POST', '/v1/audio/transcriptions', multipart(parts));
        expect([refused.status, refused.body.error.param, refused.reached]).toEqual([400, 'model', 0]);
        expect(refused.body.error.message).toMatch(/before the file part/);
      }
      const open = await call(KEYS.open, 'POST', '/v1/audio/transcriptions', multipart([{ name: 'file', file: audio, filename: 'a.wav' }, { name: 'model', value: 'whisper-1' }]));
      expect([open.status, open.reached]).toEqual([200, 1]);
    });

    it('an upload that names its model twice (allowed first, denied after the file) never reaches the upstream whole', async () => {
      const parts: Part[] = [{ name: 'model', value: 'gpt-4o-mini-transcribe' }, { name: 'file', file: Buffer.alloc(200_000, 1), filename: 'a.wav' }, { name: 'model', value: 'whisper-1' }];
      const answer = await call(KEYS.mini, 'POST', '/v1/audio/transcriptions', multipart(parts));
      expect([answer.status, answer.body.error.code, answer.reached]).toEqual([400, 'invalid_request', 0]);
      expect(answer.body.error.message).toMatch(/names the model more than once/);
    });

    it('a multipart body without a boundary, or malformed, is 400 before the upstream', async () => {
      const noBoundary = await call(KEYS.open, 'POST', '/v1/audio/transcriptions', multipart([{ name: 'model', value: 'whisper-1' }]), 'multipart/form-data');
      expect([noBoundary.status, noBoundary.reached]).toEqual([400, 0]);
      expect(noBoundary.body.error.message).toMatch(/boundary/);
      const malformed = await call(KEYS.open, 'POST', '/v1/audio/transcriptions', Buffer.from(`--${B}\r\nContent-Disposition: form-data; name*=UTF-8''model\r\n\r\nwhisper-1\r\n--${B}--\r\n`));
      expect([malformed.status, malformed.reached]).toEqual([400, 0]);
    });

    it('a JSON model that is not a string, or none, for a key with an allow-list', async () => {
      const array = await call(KEYS.mini, 'POST', '/v1/chat/completions', { model: ['gpt-4o'], messages: [] });
      expect([array.status, array.body.error.param, array.reached]).toEqual([400, 'model', 0]);
      const none = await call(KEYS.mini, 'POST', '/v1/moderations', { input: 'hi' });
      expect([none.status, none.body.error.param, none.reached]).toEqual([400, 'model', 0]);
      const open = await call(KEYS.open, 'POST', '/v1/moderations', { input: 'hi' });
      expect([open.status, open.reached]).toEqual([200, 1]);
    });
  });

  describe('batches: usage cannot be reserved up front', () => {
    const batch = { input_file_id: 'file-abc', endpoint: '/v1/chat/completions', completion_window: '24h' };

    it.each([
      ['a model allow-list', KEYS.mini, /model allow-list/],
      ['a budget of its own', KEYS.budgeted, /budget of its own/],
      ["a USD limit on its tenant's scope", KEYS.tenant, /scope 'tenant:acme'/],
    ])('a key with %s is refused 403 batch_not_allowed, never forwarded', async (_why, key, reason) => {
      for (const target of ['/v1/batches', '/v1/Batches', '/v1/batches/', '/v1/%62atches']) {
        const answer = await call(key, 'POST', target, batch);
        expect([target, answer.status, answer.body.error.code, answer.reached]).toEqual([target, 403, 'batch_not_allowed', 0]);
        expect(answer.body.error.message).toMatch(reason);
        expect(answer.body.error.message).toMatch(/cannot be reserved up front.*allowed_routes/);
      }
    });

    it('a key without either, or whose allowed_routes name batches, creates batches; reading them is never refused', async () => {
      for (const key of [KEYS.open, KEYS.batcher]) {
        const answer = await call(key, 'POST', '/v1/batches', batch);
        expect([answer.status, answer.body.id, answer.reached]).toEqual([200, 'batch_faithful', 1]);
      }
      const list = await call(KEYS.mini, 'GET', '/v1/batches');
      expect(list.reached).toBe(1);
    });
  });

  describe('realtime client secrets: sessions that reach the provider without the gateway', () => {
    const secret = { session: { type: 'realtime', model: 'gpt-realtime-mini' } };

    it.each([
      ['a model allow-list', KEYS.mini, /model allow-list/],
      ['a budget of its own', KEYS.budgeted, /budget of its own/],
      ["a USD limit on its tenant's scope", KEYS.tenant, /scope 'tenant:acme'/],
    ])('a key with %s is refused 403 ephemeral_key_not_allowed, never forwarded', async (_why, key, reason) => {
      for (const target of ['/v1/realtime/client_secrets', '/v1/Realtime/Client_Secrets/', '/v1/realtime/sessions', '/v1/realtime/transcription_sessions', '/v1/realtime/%63lient_secrets']) {
        const answer = await call(key, 'POST', target, secret);
        expect([target, answer.status, answer.body.error.code, answer.reached]).toEqual([target, 403, 'ephemeral_key_not_allowed', 0]);
        expect(answer.body.error.message).toMatch(reason);
        expect(answer.body.error.message).toMatch(/bypass.*allowed_routes/);
      }
    });

    it('a key without either, or whose allowed_routes name them, is forwarded', async () => {
      for (const key of [KEYS.open, KEYS.batcher]) {
        const answer = await call(key, 'POST', '/v1/realtime/client_secrets', secret);
        expect(answer.reached).toBe(1);
      }
    });
  });

  describe('allowed_routes', () => {
    it('a route the key may not call is 403 route_not_allowed, however it is spelled, and never forwarded', async () => {
      expect((await call(KEYS.chat, 'POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [] })).status).toBe(200);
      for (const target of ['/v1/embeddings', '/v1/%65mbeddings', '/v1/chat/completions/cmpl_1', '/v1/Chat/Completions']) {
        const answer = await call(KEYS.chat, 'POST', target, { model: 'text-embedding-3-small', input: 'x' });
        expect([target, answer.status, answer.body.error.code, answer.reached]).toEqual([target, 403, 'route_not_allowed', 0]);
      }
      const rt = await realtimeHandshake(KEYS.chat, 'gpt-realtime');
      expect([rt.status, rt.body.error.code, rt.reached]).toEqual([403, 'route_not_allowed', 0]);
    });

    it('is refused from the headers: an upload to a route not allowed is answered before its body is read', async () => {
      const { hostname, port } = new URL(gateway.url);
      const answer = await new Promise<{ status: number; body: any; continued: boolean }>((resolve, reject) => {
        let continued = false;
        const req = httpRequest({
          host: hostname,
          port,
          method: 'POST',
          path: '/v1/audio/transcriptions',
          headers: { authorization: `Bearer ${KEYS.chat}`, 'content-type': `multipart/form-data; boundary=${B}`, expect: '100-continue', 'content-length': String(10 * 1024 * 1024) },
        });
        req.on('continue', () => (continued = true));
        req.on('response', (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
          response.on('end', () => {
            req.destroy();
            resolve({ status: response.statusCode ?? 0, body: JSON.parse(text), continued });
          });
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      expect([answer.status, answer.body.error.code, answer.continued]).toEqual([403, 'route_not_allowed', false]);
    });

    it('is set, validated, read and changed on the admin API, and applies to the next request', async () => {
      const bad = await admin(gateway, 'POST', '/admin/keys', { id: 'bad-routes', allowed_routes: ['/v1/chat/completions', 'embeddings', '/v1/%62atches', '/v1/batch**'] });
      expect(bad.status).toBe(400);
      expect(bad.body.error.message).toMatch(/\[1\] "embeddings" must start with "\/v1\/"/);
      expect(bad.body.error.message).toMatch(/\[2\] "\/v1\/%62atches"/);
      expect(bad.body.error.message).toMatch(/\[3\] "\/v1\/batch\*\*"/);
      expect((await admin(gateway, 'POST', '/admin/keys', { id: 'not-strings', allowed_routes: [1] })).status).toBe(400);

      const created = await admin(gateway, 'POST', '/admin/keys', { id: 'routed', allowed_routes: ['/v1/embeddings'] });
      expect([created.status, created.body.allowed_routes]).toEqual([201, ['/v1/embeddings']]);
      const token = created.body.token as string;
      expect((await call(token, 'POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [] })).status).toBe(403);
      const patched = await admin(gateway, 'PATCH', '/admin/keys/routed', { allowed_routes: ['/v1/chat/*'] });
      expect([patched.status, patched.body.allowed_routes]).toEqual([200, ['/v1/chat/*']]);
      expect((await admin(gateway, 'GET', '/admin/keys/routed')).body.allowed_routes).toEqual(['/v1/chat/*']);
      expect((await call(token, 'POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [] })).status).toBe(200);
      expect((await call(token, 'POST', '/v1/embeddings', { model: 'x', input: 'x' })).status).toBe(403);
      expect((await admin(gateway, 'PATCH', '/admin/keys/routed', { allowed_routes: [] })).body.allowed_routes).toEqual([]);
      expect((await call(token, 'POST', '/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' })).status).toBe(200);
    });
  });
});
