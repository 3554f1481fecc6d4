import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { MockUpstream, mockPromptTokens, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, RunningGateway, admin, startGateway, within } from './harness';

const KEY = 'sk-ditto-compression-0123456789abcdefgh';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  raw: Buffer;
}

/** A request whose answer is read as raw bytes (no automatic decoding, unlike fetch). */
function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: hostname, port, method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('compressed answers: passed through as the client asked, usage read whatever the coding (e2e)', () => {
  let upstream: MockUpstream;
  let gateway: RunningGateway;
  let dir: string;
  let expectedSpent = 0;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-gzip-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [{ name: 'mock', base_url: upstream.url }],
        virtual_keys: [{ id: 'gz', token: KEY, budget: { total_tokens: 1_000_000 }, cache: { ttl_secs: 60 } }],
      }),
    );
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), ADMIN_TOKEN });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
    upstream.options = {};
  });

  const spent = async () => (await admin(gateway, 'GET', '/admin/budgets/key:gz')).body;
  /** Waits until every request so far is settled at exactly the usage the upstream reported. */
  const settledAt = async (total: number) => {
    expectedSpent += total;
    await within(2000, async () => {
      const s = await spent();
      return s.spent_tokens === expectedSpent && s.reserved_tokens === 0;
    });
  };
  const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: 3, ...extra });
  // The upstream writes 1 token where each request allows 3: usage and estimate differ, so only a
  // usage that was really read gives the exact charge.
  const usageOf = (content: string) => mockPromptTokens('/v1/chat/completions', chat(content)) + 1;
  const options = (o: MockUpstream['options']) => (upstream.options = { replyTokens: 1, ...o });

  it('relays a gzip JSON answer as gzip to a client that accepts it, and charges its usage exactly', async () => {
    options({ compress: true });
    const answer = await post(gateway.url, chat('gzip json', { user: 'a' }), { 'accept-encoding': 'gzip, zstd, br;q=0.5' });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-encoding']).toBe('gzip');
    expect(upstream.requests[0].headers['accept-encoding']).toBe('gzip, br;q=0.5');
    const body = JSON.parse(gunzipSync(answer.raw).toString());
    expect(body.usage.total_tokens).toBe(usageOf('gzip json'));
    await settledAt(body.usage.total_tokens);
  });

  it('reads usage from an answer the upstream compressed without being asked (br, deflate)', async () => {
    for (const coding of ['br', 'deflate'] as const) {
      upstream.requests.length = 0;
      options({ forceEncoding: coding });
      const answer = await post(gateway.url, chat(`forced ${coding}`));
      expect(upstream.requests[0].headers['accept-encoding']).toBe('identity');
      expect(answer.headers['content-encoding']).toBe(coding);
      const text = coding === 'br' ? brotliDecompressSync(answer.raw).toString() : require('node:zlib').inflateSync(answer.raw).toString();
      expect(JSON.parse(text).usage.total_tokens).toBe(usageOf(`forced ${coding}`));
      await settledAt(usageOf(`forced ${coding}`));
    }
  });

  it('a stream the gateway rewrites is asked for uncompressed; compressed anyway, it is decoded, stripped and charged', async () => {
    options({ forceEncoding: 'gzip', chunkDelayMs: 5 });
    const answer = await post(gateway.url, chat('stream', { stream: true }), { 'accept-encoding': 'gzip' });
    expect(upstream.requests[0].headers['accept-encoding']).toBe('identity');
    expect(answer.headers['content-encoding']).toBeUndefined();
    const text = answer.raw.toString();
    expect(text).toContain('data: [DONE]');
    expect(text).not.toContain('"usage"');
    await settledAt(usageOf('stream'));
  });

  it('a stream the client asked usage for is passed through compressed, and its usage read from a decoded copy', async () => {
    options({ compress: true });
    const answer = await post(gateway.url, chat('stream with usage', { stream: true, stream_options: { include_usage: true } }), { 'accept-encoding': 'gzip' });
    expect(answer.headers['content-encoding']).toBe('gzip');
    const text = gunzipSync(answer.raw).toString();
    expect(text).toContain(`"total_tokens":${usageOf('stream with usage')}`);
    await settledAt(usageOf('stream with usage'));
  });

  it('a coding the gateway cannot decode is passed through, and the request charged its estimate', async () => {
    options({ forceEncoding: 'zstd' });
    const answer = await post(gateway.url, chat('zstd'));
    expect(answer.headers['content-encoding']).toBe('zstd');
    expect(JSON.parse(answer.raw.toString()).usage.total_tokens).toBe(usageOf('zstd'));
    await settledAt(usageOf('zstd') + 2);
  });

  it('caches a compressed answer decoded, so a client that accepts no coding is served it', async () => {
    options({ compress: true });
    const body = chat('cached once');
    const first = await post(gateway.url, body, { 'accept-encoding': 'gzip' });
    expect(first.headers['x-ditto-cache']).toBe('miss');
    await settledAt(usageOf('cached once'));
    const second = await post(gateway.url, body);
    expect(second.headers['x-ditto-cache']).toBe('hit');
    expect(second.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(second.raw.toString()).usage.total_tokens).toBe(usageOf('cached once'));
    expect(upstream.requests).toHaveLength(1);
  });
});
