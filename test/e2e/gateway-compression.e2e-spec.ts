import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { IncomingMessage, request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createGunzip } from 'node:zlib';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import OpenAI from 'openai';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { AuditService } from '../../src/audit/audit.service';
import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { RunningGateway, startGateway } from './harness';

const KEY = 'sk-ditto-gzipping-0123456789abcdefghijklm';

/** Posts a chat completion and hands back the raw answer (no automatic decoding, unlike fetch). */
function post(url: string, body: unknown, headers: Record<string, string>): Promise<IncomingMessage> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: hostname, port, method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers } },
      resolve,
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

async function bytes(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** COMPRESSION=on: the gateway compresses uncompressed JSON and SSE answers for clients that accept it. */
describe('COMPRESSION=on (e2e)', () => {
  let upstream: MockUpstream;
  let on: RunningGateway;
  let off: RunningGateway;
  let dir: string;
  const long = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 400 };

  beforeAll(async () => {
    upstream = await startMockUpstream();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-gzipping-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({ backends: [{ name: 'plain', base_url: upstream.url }], router: { default_backends: ['plain'] }, virtual_keys: [{ id: 'gzipping', token: KEY }] }),
    );
    const env = { STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), AUDIT_FLUSH_MS: '20' };
    on = await startGateway({ ...env, COMPRESSION: 'on' });
    off = await startGateway(env);
  });

  afterAll(async () => {
    await on?.close();
    await off?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.options = {};
  });

  it('compresses a JSON answer with gzip, or br when that is all the client takes; usage is still read', async () => {
    const gzipped = await post(on.url, long, { 'accept-encoding': 'gzip, deflate, br' });
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gzipped.headers['content-length']).toBeUndefined();
    expect(gzipped.headers.vary).toMatch(/accept-encoding/);
    const raw = await bytes(gzipped);
    const decoded = JSON.parse(gunzipSync(raw).toString('utf8'));
    expect(decoded.usage.completion_tokens).toBe(400);
    expect(raw.length).toBeLessThan(gunzipSync(raw).length / 3);

    const brotli = await post(on.url, long, { 'accept-encoding': 'br, gzip;q=0' });
    expect(brotli.headers['content-encoding']).toBe('br');
    expect(JSON.parse(brotliDecompressSync(await bytes(brotli)).toString('utf8')).usage.completion_tokens).toBe(400);

    await on.app.get(AuditService).flush();
    const rows = (await on.app.get(AuditLogRepository).query({}, 1000, null)).items.filter((r) => r.kind === 'proxy');
    expect(rows.slice(-2).map((r) => (r.payload.usage as { completion_tokens: number }).completion_tokens)).toEqual([400, 400]);
  });

  it('sends as is what the client does not accept compressed, small answers, and everything with COMPRESSION=off', async () => {
    for (const [gateway, body, acceptEncoding] of [
      [on, long, 'identity'],
      [on, long, 'gzip;q=0, br;q=0'],
      [on, { ...long, max_tokens: 2 }, 'gzip'],
      [off, long, 'gzip'],
    ] as const) {
      const answer = await post(gateway.url, body, { 'accept-encoding': acceptEncoding });
      expect(answer.headers['content-encoding']).toBeUndefined();
      expect(JSON.parse((await bytes(answer)).toString('utf8')).object).toBe('chat.completion');
    }
  });

  it('a compressed SSE stream stays live: each event is flushed as it arrives', async () => {
    upstream.options = { chunkDelayMs: 150 };
    const started = Date.now();
    const answer = await post(on.url, { ...long, max_tokens: 8, stream: true }, { 'accept-encoding': 'gzip' });
    expect(answer.headers['content-encoding']).toBe('gzip');
    const arrivals: number[] = [];
    let text = '';
    for await (const chunk of answer.pipe(createGunzip())) {
      arrivals.push(Date.now() - started);
      text += (chunk as Buffer).toString('utf8');
    }
    expect(text).toContain('"content":"Hello"');
    expect(text.trim().endsWith('data: [DONE]')).toBe(true);
    // The usage chunk the gateway asked for was taken out again before compressing.
    expect(text).not.toContain('"usage"');
    // Ten events 150 ms apart: the first must be readable long before the last is sent.
    expect(arrivals.length).toBeGreaterThan(5);
    expect(arrivals[arrivals.length - 1] - arrivals[0]).toBeGreaterThan(900);
  });

  it('the official SDK reads compressed answers and streams unchanged', async () => {
    const client = new OpenAI({ apiKey: KEY, baseURL: `${on.url}/v1`, maxRetries: 0 });
    const completion = await client.chat.completions.create(long as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(completion.usage?.completion_tokens).toBe(400);
    let text = '';
    for await (const chunk of await client.chat.completions.create({ ...long, max_tokens: 6, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming)) {
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    expect(text).toBe('Hello from the mock upstream.');
  });
});
