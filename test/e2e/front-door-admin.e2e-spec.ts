import { connect } from 'node:net';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, READ_TOKEN, RunningGateway, startGateway } from './harness';
import { parseAnswer, rawHttp } from './raw-http';

/** Admin routes as Nest's router mapped them ("Mapped {/admin/keys/:id, GET} route" log lines). */
function mappedRoutes(gateway: RunningGateway): Array<{ path: string; method: string }> {
  return gateway.logs
    .map((l) => /^Mapped \{(\S+), (\w+)\} route$/.exec(String(l.msg)))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ path: m[1], method: m[2] }));
}

const PUBLIC = new Set(['/health', '/ready', '/metrics']);

/** Each letter of the path percent-encoded (lower- and upper-case hex), one at a time. */
function letterEncodings(path: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < path.length; i++) {
    if (!/[a-z]/i.test(path[i])) continue;
    const hex = path.charCodeAt(i).toString(16);
    out.push(`${path.slice(0, i)}%${hex}${path.slice(i + 1)}`, `${path.slice(0, i)}%${hex.toUpperCase()}${path.slice(i + 1)}`);
  }
  return out;
}

/** The ways an attacker spells one route's path. */
function spellings(path: string): string[] {
  const [, first, ...rest] = path.split('/');
  const tail = rest.length ? `/${rest.join('/')}` : '';
  const every = path.replace(/[a-z]/gi, (c) => `%${c.charCodeAt(0).toString(16)}`);
  return [
    path,
    ...letterEncodings(path),
    every,
    path.toUpperCase(),
    path.replace(/^\/(\w)/, (_, c: string) => `/${c.toUpperCase()}`),
    `/${path}`,
    `//${path.slice(1)}`,
    path.replace(/\//g, '//'),
    `/.${path}`,
    `/./${path.slice(1)}`,
    `/x/..${path}`,
    `/v1/..${path}`,
    `/v1/%2e%2e${path}`,
    `/%2e${path}`,
    `${path}/`,
    `${path}/.`,
    `${path};x=1`,
    `/${first};x${tail}`,
    `/${first}%3bx${tail}`,
    `/${first}%2f${rest.join('%2f')}`,
    `/${first}%2F${rest.join('%2F')}`,
    `/${first}%5c${rest.join('%5c')}`,
    `/%25${first.charCodeAt(0).toString(16)}${first.slice(1)}${tail}`,
    `/%c1%a1${first.slice(1)}${tail}`.replace('%c1%a1', first[0] === 'a' ? '%c1%a1' : '%c0%ae'),
    `/%c0%af${first}${tail}`,
    `/%e0%81%a1${first.slice(1)}${tail}`,
    `${path}%00`,
    `${path}%20`,
    `${path}%09`,
    `/${first}%00${tail}`,
    `http://127.0.0.1${path}`,
    `${path}?x=1`,
    `${path}#frag`,
  ];
}

const concrete = (path: string) => path.replace(/:(\w+)/g, 'some-$1');

describe('front door: admin authentication under every spelling of every admin path (e2e)', () => {
  let withTokens: RunningGateway;
  let disabled: RunningGateway;

  beforeAll(async () => {
    withTokens = await startGateway({ STORAGE_BACKEND: 'memory', ADMIN_TOKEN, ADMIN_READ_TOKEN: READ_TOKEN });
    disabled = await startGateway({ STORAGE_BACKEND: 'memory' });
  });
  afterAll(async () => {
    await withTokens?.close();
    await disabled?.close();
  });

  it('never answers 2xx without the right token', async () => {
    const routes = mappedRoutes(withTokens).filter((r) => !PUBLIC.has(r.path));
    expect(routes.length).toBeGreaterThanOrEqual(20);
    expect(routes.map((r) => r.path)).toEqual(expect.arrayContaining(['/admin/keys', '/api/auth/storage-info']));
    const cases: Array<{ gateway: RunningGateway; token: string | null; writes: boolean; who: string }> = [
      { gateway: withTokens, token: null, writes: false, who: 'no token' },
      { gateway: withTokens, token: 'wrong-token-0123456789', writes: false, who: 'wrong token' },
      { gateway: withTokens, token: READ_TOKEN, writes: false, who: 'read token' },
      { gateway: disabled, token: null, writes: false, who: 'admin disabled, no token' },
      { gateway: disabled, token: ADMIN_TOKEN, writes: false, who: 'admin disabled, some token' },
    ];
    const breaches: string[] = [];
    let tried = 0;
    for (const route of routes) {
      for (const target of spellings(concrete(route.path))) {
        for (const c of cases) {
          // The read token may read: only its writes must fail.
          if (c.token === READ_TOKEN && (route.method === 'GET' || route.method === 'HEAD')) continue;
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (c.token) headers.authorization = `Bearer ${c.token}`;
          const body = route.method === 'GET' || route.method === 'DELETE' ? undefined : '{"id":"intruder","total_tokens":1}';
          const answer = await rawHttp(c.gateway.url, route.method, target, headers, body);
          tried++;
          if (answer.status >= 200 && answer.status < 300) breaches.push(`${c.who}: ${route.method} ${target} -> ${answer.status}`);
          if (answer.status >= 500) breaches.push(`${c.who}: ${route.method} ${target} -> ${answer.status} ${answer.body}`);
          expect(answer.body).not.toMatch(/\n\s+at /);
        }
      }
    }
    expect(breaches).toEqual([]);
    expect(tried).toBeGreaterThan(2000);
    // Nothing was created through any of it.
    const keys = await rawHttp(withTokens.url, 'GET', '/admin/keys', { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(JSON.parse(keys.body).items).toEqual([]);
  }, 180_000);

  it('the write token still works on the canonical path and on percent-encoded spellings of it', async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    expect((await rawHttp(withTokens.url, 'POST', '/admin/keys', auth, '{"id":"plain"}')).status).toBe(201);
    expect((await rawHttp(withTokens.url, 'GET', '/%61dmin/keys/plain', auth)).status).toBe(200);
    expect((await rawHttp(withTokens.url, 'GET', '/api/%61uth/storage-info', auth)).status).toBe(200);
    expect((await rawHttp(withTokens.url, 'DELETE', '/admin/keys/plain', { authorization: auth.authorization })).status).toBe(204);
  });

  it('refuses ambiguous paths with 400 in the OpenAI error shape, anywhere', async () => {
    for (const target of ['/v1/files%2f..%2fx', '/health/%2e%2e/admin/keys', '/v1/models%5c..', '/admin%5ckeys', '/%c0%afadmin', '/x%00', '//admin/keys', '/v1/./models']) {
      const answer = await rawHttp(withTokens.url, 'GET', target);
      expect([target, answer.status]).toEqual([target, 400]);
      expect(JSON.parse(answer.body).error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error' });
    }
  });

  it('answers what is not an HTTP request, and headers that are too large, in the OpenAI error shape', async () => {
    const { hostname, port } = new URL(withTokens.url);
    const exchange = (bytes: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(Number(port), hostname, () => socket.write(bytes));
        let text = '';
        socket.on('data', (d: Buffer) => (text += d.toString()));
        socket.on('close', () => resolve(text));
        socket.on('error', () => undefined);
      });
    for (const [bytes, status, code] of [
      ['HELLO THERE\r\n\r\n', 400, 'invalid_request'],
      [`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'request_headers_too_large'],
    ] as const) {
      const answer = parseAnswer(await exchange(bytes));
      expect(answer.status).toBe(status);
      expect(JSON.parse(answer.body).error).toMatchObject({ code, type: 'invalid_request_error' });
    }
  });

  it('public routes stay public', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/docs-json']) {
      expect([path, (await rawHttp(disabled.url, 'GET', path)).status]).toEqual([path, 200]);
    }
  });
});

describe('front door: body timeouts and the cap on bodies received at once (e2e)', () => {
  const KEY = 'sk-ditto-bodytimeouts-0123456789abcdef';
  let gateway: RunningGateway;
  let upstream: MockUpstream;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    gateway = await startGateway({
      STORAGE_BACKEND: 'memory',
      ADMIN_TOKEN,
      UPSTREAM_BASE_URL: upstream.url,
      REQUEST_BODY_TIMEOUT_MS: '300',
      REQUEST_BODY_READS_MAX: '2',
    });
    expect((await rawHttp(gateway.url, 'POST', '/admin/keys', { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, JSON.stringify({ id: 'k' }))).status).toBe(201);
  });
  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  /** Sends headers and the start of a body, then nothing more; resolves with what the server answered and when. */
  function stall(path: string, headers: Record<string, string>): Promise<{ status: number; afterMs: number; body: string }> {
    const { hostname, port } = new URL(gateway.url);
    const started = Date.now();
    return new Promise((resolve) => {
      const socket = connect(Number(port), hostname, () => {
        const lines = Object.entries({ host: 'x', 'content-type': 'application/json', 'content-length': '5000', ...headers }).map(([k, v]) => `${k}: ${v}`);
        socket.write(`POST ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n{"model":`);
      });
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('close', () => {
        const answer = parseAnswer(text);
        resolve({ status: answer.status, afterMs: Date.now() - started, body: answer.body });
      });
      socket.on('error', () => undefined);
    });
  }

  it('answers an admin body that stops arriving with 408; refuses an unknown key with 401 without awaiting its body', async () => {
    for (const [path, headers] of [
      ['/admin/keys', { authorization: `Bearer ${ADMIN_TOKEN}` }],
      ['/v1/chat/completions', { authorization: `Bearer ${KEY}` }],
    ] as const) {
      const answer = await stall(path, headers);
      // The proxy path needs a known key: an unknown one is refused (401) before its body is awaited.
      if (path.startsWith('/v1')) expect([path, answer.status]).toEqual([path, 401]);
      else {
        expect([path, answer.status]).toEqual([path, 408]);
        expect(JSON.parse(answer.body).error.code).toBe('request_timeout');
      }
      expect(answer.afterMs).toBeLessThan(2500);
    }
  });

  it('a known key\'s stalled JSON body is answered 408, and beyond REQUEST_BODY_READS_MAX bodies at once 503 server_busy', async () => {
    const created = await rawHttp(gateway.url, 'POST', '/admin/keys', { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, JSON.stringify({ id: 'stalls' }));
    const token: string = JSON.parse(created.body).token;
    const auth = { authorization: `Bearer ${token}` };
    const first = stall('/v1/chat/completions', auth);
    const second = stall('/v1/chat/completions', auth);
    await new Promise((r) => setTimeout(r, 100));
    const third = await stall('/v1/chat/completions', auth);
    expect(third.status).toBe(503);
    expect(JSON.parse(third.body).error.code).toBe('server_busy');
    for (const stalled of await Promise.all([first, second])) {
      expect(stalled.status).toBe(408);
      expect(JSON.parse(stalled.body).error.code).toBe('request_timeout');
      expect(stalled.afterMs).toBeLessThan(2500);
    }
    // An upload is streamed upstream as it comes; one that pauses longer than the timeout is cut off with 408 too.
    const upload = await stall('/v1/audio/transcriptions', { ...auth, 'content-type': 'multipart/form-data; boundary=xyz' });
    expect(upload.status).toBe(408);
    expect(upload.afterMs).toBeLessThan(2500);
    expect(upstream.requests).toHaveLength(0);
  });
});
