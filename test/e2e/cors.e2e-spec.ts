import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { IncomingHttpHeaders, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, RunningGateway, startGateway } from './harness';
import { rawHttp } from './raw-http';

const KEY = 'sk-ditto-cors-key-0123456789abcdefgh';
const RATE_KEY = 'sk-ditto-cors-rated-0123456789abcdef';
const APP = 'http://app.localhost:5173';
const EVIL = 'https://evil.example';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One request with exactly these headers (an `Origin` among them, as a browser sends it). */
function send(base: string, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path: target, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const preflight = (base: string, target: string, origin: string, headers = 'authorization, content-type, x-stainless-retry-count') =>
  send(base, 'OPTIONS', target, { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': headers });

const chat = (base: string, origin: string | null, extra: Record<string, unknown> = {}, key = KEY) =>
  send(base, 'POST', '/v1/chat/completions', { authorization: `Bearer ${key}`, ...(origin ? { origin } : {}) }, JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, ...extra }));

function writeConfig(dir: string, upstream: MockUpstream): string {
  const file = path.join(dir, 'gateway.json');
  writeFileSync(
    file,
    JSON.stringify({
      backends: [{ name: 'mock', base_url: upstream.url, timeout_ms: 2000 }],
      virtual_keys: [
        { id: 'cors', token: KEY },
        { id: 'cors-rated', token: RATE_KEY, limits: { rpm: 1000 } },
      ],
    }),
  );
  return file;
}

describe('CORS at the front door (e2e)', () => {
  let upstream: MockUpstream;
  let dir: string;
  let off: RunningGateway;
  let listed: RunningGateway;
  let any: RunningGateway;

  beforeAll(async () => {
    // An upstream that allows every origin itself (as OpenAI's API does): it must not decide for the gateway.
    upstream = await startMockUpstream({ responseHeaders: { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'x-upstream-only', vary: 'Accept-Encoding' } });
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-cors-'));
    const base = { STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: writeConfig(dir, upstream), ADMIN_TOKEN };
    off = await startGateway(base);
    listed = await startGateway({ ...base, CORS_ALLOWED_ORIGINS: `${APP}, https://other.example`, CORS_MAX_AGE_SECS: '300' });
    any = await startGateway({ ...base, CORS_ALLOWED_ORIGINS: '*' });
  });

  afterAll(async () => {
    await off?.close();
    await listed?.close();
    await any?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
  });

  it('is off by default: no CORS header on any answer, the upstream\'s included; preflights are not answered', async () => {
    const answer = await chat(off.url, APP);
    expect(answer.status).toBe(200);
    expect(Object.keys(answer.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    const pre = await preflight(off.url, '/v1/chat/completions', APP);
    expect(pre.status).toBe(405);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('answers an allowed origin\'s preflight itself with 204: listed methods and headers, max-age, no key, nothing upstream', async () => {
    for (const target of ['/v1/chat/completions', '/admin/keys', '/health', '/v1/realtime']) {
      const pre = await preflight(listed.url, target, APP);
      expect(pre.status).toBe(204);
      expect(pre.headers).toMatchObject({
        'access-control-allow-origin': APP,
        'access-control-max-age': '300',
        vary: 'origin',
      });
      expect(pre.headers['access-control-allow-methods']).toBe('GET, HEAD, POST, PUT, PATCH, DELETE');
      const allowed = String(pre.headers['access-control-allow-headers']).split(', ');
      for (const h of ['authorization', 'content-type', 'openai-beta', 'openai-organization', 'openai-project', 'idempotency-key', 'x-request-id', 'x-stainless-retry-count', 'x-stainless-timeout', 'x-api-key', 'anthropic-version']) {
        expect(allowed).toContain(h);
      }
      expect(pre.headers['access-control-allow-credentials']).toBeUndefined();
      expect(pre.text).toBe('');
    }
    expect(upstream.requests).toHaveLength(0);
    // The allowed headers are a list, not an echo of what was asked.
    const odd = await preflight(listed.url, '/v1/chat/completions', APP, 'x-evil-header');
    expect(String(odd.headers['access-control-allow-headers'])).not.toContain('x-evil-header');
  });

  it('refuses a preflight from an origin that is not listed (403 origin_not_allowed, no CORS header)', async () => {
    const pre = await preflight(listed.url, '/v1/chat/completions', EVIL);
    expect(pre.status).toBe(403);
    expect(JSON.parse(pre.text).error).toMatchObject({ code: 'origin_not_allowed', type: 'permission_error' });
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    expect(pre.headers.vary).toBe('origin');
    // An origin differing only by port or scheme is another origin.
    expect((await preflight(listed.url, '/v1/models', 'http://app.localhost:5174')).status).toBe(403);
    expect((await preflight(listed.url, '/v1/models', 'https://app.localhost:5173')).status).toBe(403);
  });

  it('puts the origin, vary and the exposed headers on answers: JSON, SSE, proxy errors, the door\'s own errors, Fastify\'s routes', async () => {
    const expose = (a: Answer) => String(a.headers['access-control-expose-headers']).split(', ');
    const check = (a: Answer) => {
      expect(a.headers['access-control-allow-origin']).toBe(APP);
      expect(String(a.headers.vary).toLowerCase()).toContain('origin');
      for (const h of ['x-request-id', 'x-ditto-request-id', 'x-ditto-backend', 'x-ditto-cache', 'x-ratelimit-remaining-requests', 'x-ratelimit-limit-tokens', 'retry-after', 'x-should-retry']) expect(expose(a)).toContain(h);
      expect(a.headers['access-control-allow-credentials']).toBeUndefined();
    };
    const json = await chat(listed.url, APP, {}, RATE_KEY);
    expect(json.status).toBe(200);
    check(json);
    // The upstream's vary is kept beside the door's; its access-control-* are not.
    expect(String(json.headers.vary)).toBe('origin, Accept-Encoding');
    expect(expose(json)).not.toContain('x-upstream-only');
    expect(json.headers['x-ratelimit-limit-requests']).toBe('1000');

    const sse = await chat(listed.url, APP, { stream: true });
    expect(sse.status).toBe(200);
    expect(sse.headers['content-type']).toContain('text/event-stream');
    check(sse);

    const unauthorized = await send(listed.url, 'POST', '/v1/chat/completions', { origin: APP, 'content-type': 'application/json' }, '{}');
    expect(unauthorized.status).toBe(401);
    check(unauthorized);
    const admin = await send(listed.url, 'GET', '/admin/keys', { origin: APP });
    expect(admin.status).toBe(401);
    check(admin);
    const missing = await send(listed.url, 'GET', '/nowhere', { origin: APP });
    expect(missing.status).toBe(404);
    check(missing);
    const health = await send(listed.url, 'GET', '/health', { origin: APP });
    expect(health.status).toBe(200);
    check(health);
    const badPath = await rawHttp(listed.url, 'GET', '/v1/%2e%2e/admin/keys', { origin: APP });
    expect(badPath.status).toBe(400);
    expect(badPath.headers['access-control-allow-origin']).toBe(APP);
  });

  it('answers requests from an origin that is not listed without any CORS header (the browser keeps the answer from the page)', async () => {
    const answer = await chat(listed.url, EVIL);
    expect(answer.status).toBe(200);
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(answer.headers['access-control-expose-headers']).toBeUndefined();
    expect(String(answer.headers.vary)).toContain('origin');
    // Server-side clients send no Origin: nothing changes for them.
    const plain = await chat(listed.url, null);
    expect(Object.keys(plain.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
  });

  it('with `*`: any origin gets `access-control-allow-origin: *`, never with credentials, no vary on origin', async () => {
    const pre = await preflight(any.url, '/v1/chat/completions', EVIL);
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('*');
    expect(pre.headers['access-control-max-age']).toBe('600');
    const answer = await chat(any.url, EVIL);
    expect(answer.headers['access-control-allow-origin']).toBe('*');
    expect(answer.headers['access-control-allow-credentials']).toBeUndefined();
    expect(String(answer.headers.vary)).toBe('Accept-Encoding');
  });
});
