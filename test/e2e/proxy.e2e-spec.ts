import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import OpenAI from 'openai';
import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { AuditService } from '../../src/audit/audit.service';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { RunningGateway, startGateway, within } from './harness';

const KEY = 'sk-ditto-proxytest0123456789abcdefghij';
const LIMITED_KEY = 'sk-ditto-limitedkey0123456789abcdefghij';

async function auditRows(gateway: RunningGateway) {
  await gateway.app.get(AuditService).flush();
  return (await gateway.app.get(AuditLogRepository).query({}, 1000, null)).items;
}

/** Sends one raw HTTP/1.1 request (no client-side URL normalisation) and returns the status line. */
function rawRequest(url: string, requestLine: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(`${requestLine}\r\nHost: ${hostname}\r\nAuthorization: Bearer ${KEY}\r\nConnection: close\r\n\r\n`);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('end', () => resolve(data.split('\r\n')[0]));
    socket.on('error', reject);
  });
}

describe('OpenAI-compatible proxy (e2e)', () => {
  let primary: MockUpstream;
  let secondary: MockUpstream;
  let gateway: RunningGateway;
  let client: OpenAI;
  let dir: string;

  beforeAll(async () => {
    primary = await startMockUpstream();
    secondary = await startMockUpstream();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-proxy-'));
    const config = {
      backends: [
        { name: 'primary', base_url: primary.url, api_key: '${UPSTREAM_KEY}', timeout_ms: 1500, model_map: { 'gpt-4o': 'gpt-4o-2024-08-06' } },
        { name: 'secondary', base_url: secondary.url, weight: 0, timeout_ms: 1500 },
        { name: 'dead', base_url: 'http://127.0.0.1:1/v1', timeout_ms: 1500 },
      ],
      router: {
        default_backends: ['primary', 'secondary'],
        rules: [{ model: 'fallback-*', backends: ['dead', 'secondary'] }],
      },
      virtual_keys: [
        { id: 'proxy-key', token: KEY, tenant_id: 'acme' },
        { id: 'limited', token: LIMITED_KEY, models: ['gpt-4o-mini', 'text-embedding-*'] },
      ],
    };
    writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify(config));
    gateway = await startGateway({
      STORAGE_BACKEND: 'memory',
      GATEWAY_CONFIG: path.join(dir, 'gateway.json'),
      UPSTREAM_KEY: 'sk-upstream-secret-value',
      AUDIT_FLUSH_MS: '20',
    });
    client = new OpenAI({ apiKey: KEY, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
  });

  afterAll(async () => {
    await gateway?.close();
    await primary?.close();
    await secondary?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    primary.requests.length = 0;
    secondary.requests.length = 0;
    primary.options = {};
    secondary.options = {};
  });

  it('answers a chat completion through the official client, with the backend key and model_map applied', async () => {
    const completion = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    expect(completion.choices[0].message.content).toBe('Hello from the mock upstream');
    expect(completion.usage).toMatchObject({ completion_tokens: 5 });
    const seen = primary.requests[0];
    expect(seen.url).toBe('/v1/chat/completions');
    expect(seen.body.model).toBe('gpt-4o-2024-08-06');
    expect(seen.headers.authorization).toBe('Bearer sk-upstream-secret-value');
    expect(JSON.stringify(seen.headers)).not.toContain(KEY);
    const raw = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).withResponse();
    expect(raw.response.headers.get('x-ditto-backend')).toBe('primary');
    expect(raw.response.headers.get('x-ditto-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('streams chunk by chunk: the first chunk arrives before the upstream sends the last', async () => {
    primary.options = { chunkDelayMs: 100 };
    const started = Date.now();
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true });
    const arrivals: number[] = [];
    let text = '';
    for await (const chunk of stream) {
      arrivals.push(Date.now() - started);
      text += chunk.choices[0]?.delta?.content ?? '';
      expect(chunk).not.toHaveProperty('usage');
    }
    expect(text).toBe('Hello from the mock upstream.Hello from');
    // 10 events 100 ms apart: the first must reach the client long before the last is sent.
    expect(arrivals[arrivals.length - 1] - arrivals[0]).toBeGreaterThan(600);
    expect(primary.requests[0].body.stream_options).toEqual({ include_usage: true });
    await within(2000, async () => (await auditRows(gateway)).some((r) => r.payload.stream === true));
    const event = (await auditRows(gateway)).find((r) => r.payload.stream === true)!;
    expect(event.payload).toMatchObject({ usage: { completion_tokens: 8 }, backend: 'primary', status: 200, aborted: false });
  });

  it('passes a stream through byte for byte when the client asked for usage itself', async () => {
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'bytes' }], max_tokens: 4, stream: true, stream_options: { include_usage: true } };
    const direct = await (await fetch(`${primary.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).text();
    const viaGateway = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, 'x-request-id': 'client-chosen-id' },
      body: JSON.stringify(body),
    });
    expect(viaGateway.headers.get('content-type')).toContain('text/event-stream');
    expect(viaGateway.headers.get('x-ditto-request-id')).toBe('client-chosen-id');
    expect(await viaGateway.text()).toBe(direct);
    const rows = await auditRows(gateway);
    expect(rows.find((r) => r.requestId === 'client-chosen-id')?.payload.usage).toMatchObject({ completion_tokens: 4, total_tokens: expect.any(Number) });
  });

  it('handles completions, embeddings, responses and unknown paths', async () => {
    const completion = await client.completions.create({ model: 'gpt-4o-mini', prompt: 'say', max_tokens: 3 });
    expect(completion.choices[0].text).toBe('Hello from the');
    const embedding = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(embedding.data).toHaveLength(2);
    const response = await client.responses.create({ model: 'gpt-4o-mini', input: 'hello', max_output_tokens: 2 });
    expect(response.output_text).toBe('Hello from');
    const unknown = await fetch(`${gateway.url}/v1/vector_stores/vs_1/files?limit=2`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(await unknown.json()).toEqual({ echo: { method: 'GET', path: '/v1/vector_stores/vs_1/files', query: 'limit=2' } });
  });

  it('lists only the models a key may use, and refuses other models with 403', async () => {
    const all = await client.models.list();
    expect(all.data.map((m) => m.id)).toEqual(['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small', 'claude-3-haiku']);
    const limited = new OpenAI({ apiKey: LIMITED_KEY, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    expect((await limited.models.list()).data.map((m) => m.id)).toEqual(['gpt-4o-mini', 'text-embedding-3-small']);
    const refused = await limited.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(refused.code).toBe('model_not_allowed');
    expect(primary.requests.filter((r) => r.url === '/v1/chat/completions')).toHaveLength(0);
  });

  it('maps errors to OpenAI error bodies', async () => {
    const wrong = new OpenAI({ apiKey: 'sk-ditto-wrong', baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const unauthorized = await wrong.models.list().catch((e) => e);
    expect(unauthorized).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(unauthorized.code).toBe('invalid_api_key');
    const missing = await fetch(`${gateway.url}/v1/models`);
    expect(missing.status).toBe(401);
    primary.options = { failStatus: 400 };
    const upstream400 = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }).catch((e) => e);
    expect(upstream400).toBeInstanceOf(OpenAI.BadRequestError);
    expect(secondary.requests).toHaveLength(0); // 400 is not retried
    primary.options = { failStatus: 503 };
    secondary.options = { failStatus: 503 };
    const both503 = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }).catch((e) => e);
    expect(both503.status).toBe(503);
    const dead = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'fallback-x', messages: [] }),
    });
    expect(dead.status).toBe(503);
    const rows = await auditRows(gateway);
    expect(rows.some((r) => r.kind === 'proxy.blocked' && r.payload.error === 'invalid_api_key')).toBe(true);
  });

  describe('fallback', () => {
    const ask = (model = 'gpt-4o-mini') =>
      client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }).withResponse();

    it('moves on when the first backend refuses the connection', async () => {
      const { response } = await ask('fallback-model');
      expect(response.status).toBe(200);
      expect(response.headers.get('x-ditto-backend')).toBe('secondary');
    });

    it('moves on when the first backend answers 503', async () => {
      primary.options = { failStatus: 503 };
      const { response } = await ask();
      expect(response.headers.get('x-ditto-backend')).toBe('secondary');
      expect(primary.requests).toHaveLength(1);
    });

    it('moves on when the first backend times out', async () => {
      primary.options = { hang: true };
      const { response } = await ask();
      expect(response.headers.get('x-ditto-backend')).toBe('secondary');
    });
  });

  it('closes the upstream connection within 1 s when the client aborts mid-stream', async () => {
    primary.options = { chunkDelayMs: 200 };
    const closedBefore = primary.closedSockets.length;
    const controller = new AbortController();
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long' }], max_tokens: 50, stream: true }),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    const abortedAt = Date.now();
    controller.abort();
    await within(1000, () => primary.closedSockets.length > closedBefore);
    expect(primary.closedSockets[primary.closedSockets.length - 1] - abortedAt).toBeLessThan(1000);
    await within(2000, async () => (await auditRows(gateway)).some((r) => r.payload.aborted === true));
  });

  it('refuses unsafe paths with 400 and never contacts the upstream', async () => {
    for (const target of ['/v1/../admin/keys', '/v1/%2e%2e/admin', '/v1/files%2f..%2fx', '/v1/models%0d%0aX-Injected:%201', '/v1//evil.example/x']) {
      expect(await rawRequest(gateway.url, `GET ${target} HTTP/1.1`)).toMatch(/^HTTP\/1\.1 400/);
    }
    expect(await rawRequest(gateway.url, 'GET http://evil.example/v1/models HTTP/1.1')).toMatch(/^HTTP\/1\.1 (400|404)/);
    expect(primary.requests).toHaveLength(0);
    expect(secondary.requests).toHaveLength(0);
  });

  it('refuses an oversized body with 413', async () => {
    const small = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), UPSTREAM_KEY: 'k', BODY_LIMIT_BYTES: '2048' });
    try {
      const big = await fetch(`${small.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(4096) }] }),
      });
      expect(big.status).toBe(413);
      // The rest of a refused body is not read: the connection is closed instead.
      expect(big.headers.get('connection')).toBe('close');
      expect(((await big.json()) as any).error.code).toBe('request_too_large');
      const upload = await fetch(`${small.url}/v1/files`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${KEY}` },
        body: Buffer.alloc(4096),
      });
      expect(upload.status).toBe(413);
    } finally {
      await small.close();
    }
    expect(primary.requests).toHaveLength(0);
  });

  it('refuses malformed, empty and prototype-poisoning JSON bodies with 400, without contacting the upstream', async () => {
    const post = (body: string) =>
      fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8', authorization: `Bearer ${KEY}` }, body });
    for (const body of ['{"model": "gpt-4o-mini", ', '', '{"model":"gpt-4o-mini","__proto__":{"admin":true}}', '{"constructor":{"prototype":{"admin":true}}}']) {
      const answer = await post(body);
      expect(answer.status).toBe(400);
      const error = ((await answer.json()) as any).error;
      expect(error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request' });
      expect(error.message).toMatch(/JSON|empty|prototype|constructor/i);
      // Bodies are read after the key check, inside the proxy: the refusal carries the request id like every answer.
      expect(answer.headers.get('x-ditto-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(primary.requests).toHaveLength(0);
  });

  it('forwards a JSON body it does not change byte for byte, and a JSON body that is not an object as sent', async () => {
    const text = '{ "model" : "gpt-4o-mini",\n  "messages": [{"role": "user", "content": "caf\\u00e9"}], "max_tokens": 2 }';
    const answer = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: text });
    expect(answer.status).toBe(200);
    expect(primary.requests[0].raw).toBe(text);
    const array = await fetch(`${gateway.url}/v1/custom/batch`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: '[1, 2]' });
    expect(array.status).toBe(200);
    expect(primary.requests[1]).toMatchObject({ url: '/v1/custom/batch', raw: '[1, 2]' });
  });

  it('never logs or audits the virtual key or the upstream key', async () => {
    const everything = JSON.stringify(gateway.logs) + JSON.stringify(await auditRows(gateway));
    for (const secret of [KEY, LIMITED_KEY, 'sk-upstream-secret-value']) expect(everything).not.toContain(secret);
  });
});
