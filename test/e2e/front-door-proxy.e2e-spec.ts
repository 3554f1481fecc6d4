import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, RunningGateway, admin, startGateway, within } from './harness';
import { rawHttp } from './raw-http';

const ALLOWLISTED = 'sk-ditto-frontdoor-allowlisted-0123456789';
const BUDGETED = 'sk-ditto-frontdoor-budgeted-0123456789ab';
const OPEN = 'sk-ditto-frontdoor-open-0123456789abcdefg';
const STRICT = 'sk-ditto-frontdoor-strict-0123456789abcde';
const STRICT_BYTES = 'sk-ditto-frontdoor-strictbytes-0123456789';
const RATED = 'sk-ditto-frontdoor-rated-0123456789abcdef';
const UPSTREAM_KEY = 'sk-upstream-frontdoor-secret';

/** One body per governed endpoint; `big` makes the prompt alone larger than a 5,000-token budget. */
const ROUTES: Array<{ path: string; body: (model: string, big?: boolean) => Record<string, unknown> }> = [
  { path: '/v1/chat/completions', body: (model, big) => ({ model, messages: [{ role: 'user', content: big ? 'hello '.repeat(6000) : 'hi' }], max_tokens: 20_000 }) },
  { path: '/v1/completions', body: (model, big) => ({ model, prompt: big ? 'hello '.repeat(6000) : 'hi', max_tokens: 20_000 }) },
  { path: '/v1/responses', body: (model, big) => ({ model, input: big ? 'hello '.repeat(6000) : 'hi', max_output_tokens: 20_000 }) },
  { path: '/v1/embeddings', body: (model, big) => ({ model, input: big ? 'hello '.repeat(6000) : 'hi' }) },
];

/** The labels a JSON body can arrive under (null: no content-type header at all). */
const CONTENT_TYPES: Array<string | null> = [
  'application/json',
  null,
  'text/plain',
  'application/vnd.example+json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/octet-stream',
];

describe('front door: governed /v1 bodies, headers, methods and shapes (e2e)', () => {
  let upstream: MockUpstream;
  let gateway: RunningGateway;
  let strict: RunningGateway;
  let dir: string;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-front-door-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [
          { name: 'main', base_url: upstream.url, api_key: '${UPSTREAM_KEY}', headers: { 'x-backend-header': 'configured' } },
          { name: 'org', base_url: upstream.url, api_key: '${UPSTREAM_KEY}', pass_client_headers: true },
        ],
        router: { default_backends: ['main'], rules: [{ model: 'org-*', backends: ['org'] }] },
        virtual_keys: [
          { id: 'allowlisted', token: ALLOWLISTED, models: ['gpt-4o-mini', 'text-embedding-3-small'] },
          { id: 'budgeted', token: BUDGETED, budget: { total_tokens: 5000 } },
          { id: 'open', token: OPEN },
          { id: 'strict', token: STRICT, budget: { total_tokens: 300 } },
          { id: 'strict-bytes', token: STRICT_BYTES, budget: { total_tokens: 300 } },
          { id: 'rated', token: RATED, limits: { rpm: 1000, tpm: null } },
        ],
      }),
    );
    const env = { STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), UPSTREAM_KEY, ADMIN_TOKEN };
    // `gateway` runs estimate mode, where a request that does not fit is refused; `strict` runs the
    // default mode, where its output is capped to what fits.
    gateway = await startGateway({ ...env, BUDGET_MODE: 'estimate' });
    strict = await startGateway(env);
  });

  afterAll(async () => {
    await gateway?.close();
    await strict?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
    upstream.options = {};
  });

  const send = (g: RunningGateway, key: string, route: string, body: string, contentType: string | null, extra: Record<string, string> = {}) =>
    rawHttp(g.url, 'POST', route, { authorization: `Bearer ${key}`, ...(contentType ? { 'content-type': contentType } : {}), ...extra }, body);

  it('a JSON body is governed whatever its label: model allow-list', async () => {
    for (const route of ROUTES) {
      for (const type of CONTENT_TYPES) {
        upstream.requests.length = 0;
        const answer = await send(gateway, ALLOWLISTED, route.path, JSON.stringify(route.body('gpt-4o')), type);
        expect([route.path, type, answer.status]).toEqual([route.path, type, expect.any(Number)]);
        expect([route.path, type, answer.status >= 400 && answer.status < 500]).toEqual([route.path, type, true]);
        expect([route.path, type, upstream.requests.length]).toEqual([route.path, type, 0]);
      }
    }
  });

  it('a JSON body is governed whatever its label: token budget', async () => {
    for (const route of ROUTES) {
      for (const type of CONTENT_TYPES) {
        upstream.requests.length = 0;
        const answer = await send(gateway, BUDGETED, route.path, JSON.stringify(route.body('gpt-4o-mini', true)), type);
        expect([route.path, type, answer.status >= 400 && answer.status < 500]).toEqual([route.path, type, true]);
        expect([route.path, type, upstream.requests.length]).toEqual([route.path, type, 0]);
      }
    }
    const spent = await admin(gateway, 'GET', '/admin/budgets/key:budgeted');
    expect(spent.body).toMatchObject({ spent_tokens: 0, reserved_tokens: 0 });
  });

  it('a JSON body is governed whatever its label: the strict output cap', async () => {
    for (const route of ROUTES.filter((r) => r.path !== '/v1/embeddings')) {
      for (const type of CONTENT_TYPES) {
        upstream.requests.length = 0;
        const answer = await send(strict, STRICT, route.path, JSON.stringify(route.body('gpt-4o-mini')), type);
        if (answer.status >= 200 && answer.status < 300) {
          const seen = upstream.requests[0].body;
          for (const field of ['max_tokens', 'max_completion_tokens', 'max_output_tokens']) {
            if (seen[field] !== undefined) expect([route.path, type, field, seen[field] <= 300]).toEqual([route.path, type, field, true]);
          }
        } else {
          expect([route.path, type, answer.status >= 400 && answer.status < 500]).toEqual([route.path, type, true]);
          expect([route.path, type, upstream.requests.length]).toEqual([route.path, type, 0]);
        }
      }
    }
    await within(2000, async () => (await admin(strict, 'GET', '/admin/budgets/key:strict')).body.reserved_tokens === 0);
    expect((await admin(strict, 'GET', '/admin/budgets/key:strict')).body.spent_tokens).toBeLessThanOrEqual(300);
  });

  it('valid JSON under another label is forwarded as JSON; anything else is refused before the upstream', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    for (const type of [null, 'text/plain', 'application/x-www-form-urlencoded', 'application/vnd.example+json']) {
      upstream.requests.length = 0;
      const answer = await send(gateway, OPEN, '/v1/chat/completions', body, type);
      expect([type, answer.status]).toEqual([type, 200]);
      expect(upstream.requests[0].headers['content-type']).toBe('application/json');
      expect(upstream.requests[0].body.model).toBe('gpt-4o-mini');
    }
    for (const [type, garbage] of [
      ['text/plain', 'not json at all'],
      [null, 'model=gpt-4o&messages=x'],
      ['application/x-www-form-urlencoded', 'model=gpt-4o&max_tokens=99999'],
      ['application/json', '{"model":"gpt-4o",'],
      ['multipart/form-data; boundary=xyz', '--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o\r\n--xyz--\r\n'],
      ['application/octet-stream', '\u0000\u0001binary'],
    ] as const) {
      upstream.requests.length = 0;
      const answer = await send(gateway, OPEN, '/v1/chat/completions', garbage, type);
      expect([type, answer.status]).toEqual([type, expect.any(Number)]);
      expect([type, [400, 415].includes(answer.status)]).toEqual([type, true]);
      expect(JSON.parse(answer.body).error.message).not.toMatch(/\n\s+at /);
      expect(upstream.requests).toHaveLength(0);
    }
  });

  it('strict mode caps every output-limit field the upstream might honour', async () => {
    for (const extra of [
      { max_tokens: 5000, max_completion_tokens: 5000 },
      { max_tokens: 5000, max_output_tokens: 5000 },
      { max_completion_tokens: 5000, max_output_tokens: 5000, max_tokens: 1 },
      { max_tokens: 1, max_completion_tokens: 5000 },
    ]) {
      upstream.requests.length = 0;
      const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], ...extra });
      const answer = await send(strict, STRICT, '/v1/chat/completions', body, 'application/json');
      if (answer.status === 200) {
        const seen = upstream.requests[0].body;
        for (const field of Object.keys(extra)) expect([field, seen[field] <= 300]).toEqual([field, true]);
      } else {
        expect(answer.status).toBe(402);
      }
    }
    // An output field that is not a non-negative integer is refused, not passed on for the upstream to read its own way.
    for (const bad of ['"5000"', '5000.5', '-1', '1e300', 'true', '{"a":1}']) {
      upstream.requests.length = 0;
      const body = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_completion_tokens":${bad}}`;
      const answer = await send(strict, STRICT, '/v1/chat/completions', body, 'application/json');
      expect([bad, answer.status]).toEqual([bad, 400]);
      expect(upstream.requests).toHaveLength(0);
    }
  });

  it('a JSON body with a top-level key twice is refused: parsers disagree on which one counts', async () => {
    for (const body of [
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":99999,"max_tokens":1}',
      '{"model":"gpt-4o","model":"gpt-4o-mini","messages":[]}',
      '{"model":"gpt-4o-mini","messages":[],"max_tokens":1,"\\u006dax_tokens":99999}',
    ]) {
      upstream.requests.length = 0;
      const answer = await send(gateway, ALLOWLISTED, '/v1/chat/completions', body, 'application/json');
      expect([body, answer.status]).toEqual([body, 400]);
      expect(upstream.requests).toHaveLength(0);
    }
  });

  it('edits the JSON text in place: numbers, key order and escapes reach the upstream byte for byte', async () => {
    const text = '{"stream":true,  "seed": 12345678901234567890, "temperature": 1.0, "model": "gpt-4o-mini", "max_tokens": 5000,\n "messages": [{"content": "caf\\u00e9 \\ud83d\\ude00", "role": "user"}], "top_p": 1e-3}';
    const answer = await send(strict, STRICT_BYTES, '/v1/chat/completions', text, 'application/json');
    expect(answer.status).toBe(200);
    const cap = upstream.requests[0].body.max_tokens;
    expect(cap).toBeLessThanOrEqual(300);
    expect(upstream.requests[0].raw).toBe(text.replace('"max_tokens": 5000', `"max_tokens": ${cap}`).replace(/}$/, ',"stream_options":{"include_usage":true}}'));
    upstream.requests.length = 0;
    const plain = '{ "model" : "gpt-4o-mini", "n": 1.0, "seed": 98765432109876543210, "messages": [{"role": "user", "content": "\\u00e9"}], "stream": true, "stream_options": {"x": 1.50} }';
    expect((await send(gateway, OPEN, '/v1/chat/completions', plain, 'application/json')).status).toBe(200);
    expect(upstream.requests[0].raw).toBe(plain.replace('{"x": 1.50}', '{"x": 1.50,"include_usage":true}'));
  });

  it('the estimate reserves the largest output limit of the request, whichever field holds it', async () => {
    // 5,000-token budget: 10 output tokens alone would fit; 20,000 must not, in whichever field it is.
    for (const limits of [
      { max_tokens: 10, max_completion_tokens: 20_000 },
      { max_tokens: 20_000, max_completion_tokens: 10 },
      { max_completion_tokens: 10, max_output_tokens: 20_000 },
      { max_tokens: 20_000, max_output_tokens: 10 },
    ]) {
      upstream.requests.length = 0;
      const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], ...limits });
      const answer = await send(gateway, BUDGETED, '/v1/chat/completions', body, 'application/json');
      expect([limits, answer.status]).toEqual([limits, 402]);
      expect(upstream.requests).toHaveLength(0);
    }
  });

  it('forwards only the headers the upstream needs: no client credential, organisation or project', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    const sent = {
      'x-api-key': OPEN,
      'api-key': OPEN,
      'x-goog-api-key': OPEN,
      'x-admin-token': ADMIN_TOKEN,
      cookie: `session=${OPEN}`,
      'proxy-authorization': `Basic ${OPEN}`,
      'openai-organization': 'org-attacker',
      'openai-project': 'proj-attacker',
      'x-forwarded-for': '10.0.0.1',
      'x-custom-anything': 'value',
      'openai-beta': 'assistants=v2',
      'idempotency-key': 'idem-1',
      'user-agent': 'OpenAI/JS 7.0',
      accept: 'application/json',
    };
    const answer = await send(gateway, OPEN, '/v1/chat/completions', body, 'application/json', sent);
    expect(answer.status).toBe(200);
    const seen = upstream.requests[0].headers;
    expect(seen.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(seen['x-backend-header']).toBe('configured');
    expect(seen).toMatchObject({ 'openai-beta': 'assistants=v2', 'idempotency-key': 'idem-1', 'user-agent': 'OpenAI/JS 7.0', accept: 'application/json' });
    for (const name of ['x-api-key', 'api-key', 'x-goog-api-key', 'x-admin-token', 'cookie', 'proxy-authorization', 'openai-organization', 'openai-project', 'x-forwarded-for', 'x-custom-anything']) {
      expect([name, seen[name]]).toEqual([name, undefined]);
    }
    expect(JSON.stringify(seen)).not.toContain(OPEN);
    // A virtual key sent as `api-key` alone is not a credential the gateway reads: it must not leave either.
    upstream.requests.length = 0;
    const viaApiKey = await rawHttp(gateway.url, 'POST', '/v1/chat/completions', { 'api-key': OPEN, 'content-type': 'application/json' }, body);
    expect(viaApiKey.status).toBe(401);
    expect(upstream.requests).toHaveLength(0);
    // A backend that allows it receives the client's organisation and project, never its credentials.
    upstream.requests.length = 0;
    const orgBody = JSON.stringify({ model: 'org-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    expect((await send(gateway, OPEN, '/v1/chat/completions', orgBody, 'application/json', sent)).status).toBe(200);
    expect(upstream.requests[0].headers).toMatchObject({ 'openai-organization': 'org-attacker', 'openai-project': 'proj-attacker', authorization: `Bearer ${UPSTREAM_KEY}` });
    expect(JSON.stringify(upstream.requests[0].headers)).not.toContain(OPEN);
  });

  it('every answer carries x-request-id (the upstream\'s when it sent one); refusals say x-should-retry: false', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    const ok = await send(gateway, OPEN, '/v1/chat/completions', body, 'application/json');
    expect(ok.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(ok.headers['x-request-id']).toBe(ok.headers['x-ditto-request-id']);
    upstream.options = { responseHeaders: { 'x-request-id': 'req_upstream_1' } };
    const relayed = await send(gateway, OPEN, '/v1/chat/completions', body, 'application/json', { 'x-request-id': 'client-id-1' });
    expect(relayed.headers).toMatchObject({ 'x-request-id': 'req_upstream_1', 'x-ditto-request-id': 'client-id-1' });
    upstream.options = {};
    for (const [key, payload, status] of [
      ['sk-ditto-not-a-key-0123456789', body, 401],
      [ALLOWLISTED, JSON.stringify({ model: 'gpt-4o', messages: [] }), 403],
      [BUDGETED, JSON.stringify({ model: 'gpt-4o-mini', messages: [], max_tokens: 1_000_000 }), 402],
    ] as const) {
      const refused = await send(gateway, key, '/v1/chat/completions', payload, 'application/json');
      expect(refused.status).toBe(status);
      expect(refused.headers['x-should-retry']).toBe('false');
      expect(refused.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    }
    // The gateway's own errors before the proxy (a bad path) and the admin API's answers carry one too.
    expect((await rawHttp(gateway.url, 'GET', '/v1/a%5cb')).headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect((await rawHttp(gateway.url, 'GET', '/health')).headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('when the gateway\'s rate limit applies, its x-ratelimit-* set replaces the upstream\'s', async () => {
    upstream.options = { responseHeaders: { 'x-ratelimit-limit-requests': '5000', 'x-ratelimit-remaining-requests': '4999', 'x-ratelimit-reset-requests': '12ms', 'x-ratelimit-limit-tokens': '800000' } };
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    const limited = await send(gateway, RATED, '/v1/chat/completions', body, 'application/json');
    expect(limited.status).toBe(200);
    expect(limited.headers['x-ratelimit-limit-requests']).toBe('1000');
    expect(Object.keys(limited.headers).filter((h) => h.startsWith('x-ratelimit-')).sort()).toEqual(['x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests']);
    // Without a gateway limit, the upstream's set passes as it is.
    const open = await send(gateway, OPEN, '/v1/chat/completions', body, 'application/json');
    expect(open.headers['x-ratelimit-reset-requests']).toBe('12ms');
    expect(open.headers['x-ratelimit-limit-tokens']).toBe('800000');
  });

  it('answers 405 with allow for a method the route does not take, and never forwards it', async () => {
    for (const method of ['PUT', 'PATCH']) {
      const answer = await rawHttp(gateway.url, method, '/v1/chat/completions', { authorization: `Bearer ${OPEN}`, 'content-type': 'application/json' }, '{"model":"gpt-4o-mini","max_tokens":99999}');
      expect([method, answer.status]).toEqual([method, 405]);
      expect(answer.headers.allow).toMatch(/POST/);
      expect(JSON.parse(answer.body).error.code).toBeDefined();
    }
    const embeddingsGet = await rawHttp(gateway.url, 'GET', '/v1/embeddings', { authorization: `Bearer ${OPEN}` });
    expect(embeddingsGet.status).toBe(405);
    expect(embeddingsGet.headers.allow).toBe('POST');
    expect(upstream.requests).toHaveLength(0);
  });

  it('a very deeply nested body is refused with 400, no stack trace, no ERROR log', async () => {
    const before = gateway.logs.length;
    for (const deep of [`{"model":"gpt-4o-mini","messages":${'['.repeat(100_000)}${']'.repeat(100_000)}}`, `{"model":"gpt-4o-mini","x":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`]) {
      const answer = await send(gateway, OPEN, '/v1/chat/completions', deep, 'application/json');
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body).error).toMatchObject({ code: 'invalid_request' });
      expect(answer.body).toMatch(/depth|nest/i);
    }
    // 64 levels are fine.
    const ok = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":1,"metadata":${'{"a":'.repeat(60)}1${'}'.repeat(60)}}`;
    expect((await send(gateway, OPEN, '/v1/chat/completions', ok, 'application/json')).status).toBe(200);
    expect(gateway.logs.slice(before).filter((l) => Number(l.level) >= 50)).toEqual([]);
    expect(upstream.requests).toHaveLength(1);
  });

  it('Expect: 100-continue is answered (never 502); an unknown expectation gets 417', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    const answer = await send(gateway, OPEN, '/v1/chat/completions', body, 'application/json', { expect: '100-continue' });
    expect(answer.status).toBe(200);
    expect(upstream.requests[0].headers.expect).toBeUndefined();
    const unknown = await send(gateway, OPEN, '/v1/chat/completions', body, 'application/json', { expect: 'something-else' });
    expect(unknown.status).toBe(417);
    // No key: refused before the client is told to send its body.
    const anonymous = await new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
      const { hostname, port } = new URL(gateway.url);
      let continued = false;
      const req = httpRequest({ host: hostname, port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json', expect: '100-continue', 'content-length': 10_000_000 } });
      req.on('continue', () => (continued = true));
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, continued });
        req.destroy();
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(anonymous).toEqual({ status: 401, continued: false });
    expect(upstream.requests).toHaveLength(1);
  });

  it('a client that disconnects mid-body is logged at debug, not as an ERROR with a stack', async () => {
    const before = gateway.logs.length;
    const { hostname, port } = new URL(gateway.url);
    const cases: Array<{ path: string; headers: Record<string, string | number>; head: string }> = [
      { path: '/v1/chat/completions', headers: { 'content-type': 'application/json', 'content-length': 100_000 }, head: '{"model":"gpt-4o-mini","messages":[' },
      { path: '/v1/chat/completions', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, head: '{"model":"gpt-4o-mini","messages":[' },
      { path: '/v1/audio/transcriptions', headers: { 'content-type': 'multipart/form-data; boundary=xyz', 'content-length': 100_000 }, head: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF' },
      { path: '/admin/keys', headers: { 'content-type': 'application/json', 'content-length': 100_000, authorization: `Bearer ${ADMIN_TOKEN}` }, head: '{"id":"x' },
    ];
    for (const c of cases) {
      await new Promise<void>((resolve) => {
        const req = httpRequest({ host: hostname, port, method: 'POST', path: c.path, headers: { authorization: `Bearer ${OPEN}`, ...c.headers } });
        req.on('error', () => resolve());
        req.write(c.head);
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 150);
      });
    }
    await new Promise((r) => setTimeout(r, 300));
    const lines = gateway.logs.slice(before);
    expect(lines.filter((l) => Number(l.level) >= 40)).toEqual([]);
    expect(JSON.stringify(lines)).not.toMatch(/\\n\s+at /);
    expect(upstream.requests.filter((r) => r.url.startsWith('/v1/chat'))).toHaveLength(0);
  });
});
