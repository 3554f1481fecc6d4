import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Server, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BrowserContext, Page, chromium } from 'playwright-core';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { MockRealtime, attachMockRealtime } from '../fixtures/mock-realtime';
import { RunningGateway, startGateway } from './harness';

/** Debian's Chromium (`apt-get install chromium`; .ci/run installs it). Playwright never downloads a browser here. */
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p)) ?? null;
const KEY = 'sk-ditto-browser-key-0123456789abcdef';

/** `Chromium 156.0.8078.114`, for the suite's title (CI's summary line names it). */
function chromiumVersion(binary: string): string {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return /Chromium [\d.]+/.exec(out)?.[0] ?? 'Chromium (version unknown)';
}

if (!CHROMIUM) {
  process.stderr.write('\n*** browser CORS e2e SKIPPED: Chromium is not installed (`apt-get install chromium`; .ci/run installs it) ***\n\n');
}

/** The OpenAI SDK's ES modules, as a web app would ship them (they run in a browser as they are). */
const OPENAI_SDK = path.dirname(require.resolve('openai'));

/**
 * A page server: another origin than the gateway's (another port), serving one empty page and, under
 * `/openai/`, the OpenAI SDK's modules.
 */
async function pageServer(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://page');
    if (url.pathname.startsWith('/openai/')) {
      const file = path.resolve(OPENAI_SDK, `.${url.pathname.slice('/openai'.length)}`);
      if (!file.startsWith(`${OPENAI_SDK}${path.sep}`) || !/\.m?js$/.test(file) || !existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      res.end(readFileSync(file));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><meta charset="utf-8"><title>app</title><p>an app on another origin</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

(CHROMIUM ? describe : describe.skip)(`${CHROMIUM ? chromiumVersion(CHROMIUM) : 'Chromium (not installed: apt-get install chromium)'}, headless: a web page on another origin calling the gateway (CORS, e2e)`, () => {
  let upstream: MockUpstream;
  let realtime: MockRealtime;
  let gateway: RunningGateway;
  let allowed: { url: string; server: Server };
  let other: { url: string; server: Server };
  let dir: string;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    realtime = attachMockRealtime(upstream.server);
    allowed = await pageServer();
    other = await pageServer();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-browser-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [{ name: 'mock', base_url: upstream.url, timeout_ms: 5000 }],
        virtual_keys: [{ id: 'browser', token: KEY, limits: { rpm: 1000 } }],
      }),
    );
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), CORS_ALLOWED_ORIGINS: allowed.url });
    // A fresh profile, no network beyond what the page asks for.
    context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: CHROMIUM!,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await context.newPage();
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await gateway?.close();
    await upstream?.close();
    allowed?.server.close();
    other?.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
    upstream.options = {};
  });

  it('a JSON chat completion: the page reads the body, x-request-id and the x-ratelimit-* headers', async () => {
    await page.goto(allowed.url);
    const result = await page.evaluate(
      async ({ gateway, key }) => {
        const response = await fetch(`${gateway}/v1/chat/completions`, {
          method: 'POST',
          // What OpenAI's SDK sends from a browser: each header must pass the preflight.
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-stainless-retry-count': '0', 'x-stainless-lang': 'js', 'openai-beta': 'assistants=v2' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
        });
        return {
          status: response.status,
          body: (await response.json()) as any,
          requestId: response.headers.get('x-request-id'),
          limit: response.headers.get('x-ratelimit-limit-requests'),
          remaining: response.headers.get('x-ratelimit-remaining-requests'),
          backend: response.headers.get('x-ditto-backend'),
        };
      },
      { gateway: gateway.url, key: KEY },
    );
    expect(result.status).toBe(200);
    expect(result.body.choices[0].message.content).toBe('Hello from the');
    expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.limit).toBe('1000');
    expect(Number(result.remaining)).toBeLessThan(1000);
    expect(result.backend).toBe('mock');
    expect(upstream.requests).toHaveLength(1);
  });

  it('a streamed chat completion, read chunk by chunk as the events arrive', async () => {
    upstream.options = { chunkDelayMs: 100 };
    await page.goto(allowed.url);
    const result = await page.evaluate(
      async ({ gateway, key }) => {
        const started = performance.now();
        const response = await fetch(`${gateway}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream' }], max_tokens: 6, stream: true }),
        });
        const reader = response.body!.getReader();
        const decoder = new TextDecoder();
        const arrivals: number[] = [];
        let text = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          const chunk = decoder.decode(value, { stream: true });
          for (let i = 0; i < (chunk.match(/^data: /gm) ?? []).length; i++) arrivals.push(performance.now() - started);
          text += chunk;
        }
        return { status: response.status, type: response.headers.get('content-type'), requestId: response.headers.get('x-request-id'), arrivals, text };
      },
      { gateway: gateway.url, key: KEY },
    );
    expect(result.status).toBe(200);
    expect(result.type).toContain('text/event-stream');
    expect(result.requestId).toBeTruthy();
    expect(result.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    // role chunk, 6 words, finish chunk, [DONE]: 100 ms apart upstream, so spread out, not one lump.
    expect(result.arrivals).toHaveLength(9);
    expect(result.arrivals[8] - result.arrivals[0]).toBeGreaterThan(500);
  });

  it('an error answer (401) is readable from the page: status, OpenAI error body, x-request-id', async () => {
    await page.goto(allowed.url);
    const result = await page.evaluate(async ({ gateway }) => {
      const response = await fetch(`${gateway}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-ditto-not-a-key-0000000000', 'content-type': 'application/json' },
        body: '{"model":"gpt-4o-mini","messages":[]}',
      });
      return { status: response.status, body: (await response.json()) as any, requestId: response.headers.get('x-request-id'), retry: response.headers.get('x-should-retry') };
    }, { gateway: gateway.url });
    expect(result.status).toBe(401);
    expect(result.body.error).toMatchObject({ code: 'invalid_api_key', type: 'invalid_request_error' });
    expect(result.requestId).toBeTruthy();
    expect(result.retry).toBe('false');
  });

  it('the OpenAI SDK, loaded in the page, works unchanged: JSON with its request id, a stream, an APIError', async () => {
    await page.goto(allowed.url);
    // As a web app loads it: an ES module import in the page (not transpiled by the test's tooling).
    await page.addScriptTag({ type: 'module', content: "import OpenAI, { APIError } from '/openai/index.mjs'; Object.assign(globalThis, { OpenAI, APIError });" });
    await page.waitForFunction(() => 'OpenAI' in globalThis, undefined, { timeout: 25_000 });
    const result = await page.evaluate(
      async ({ gateway, key }) => {
        const { OpenAI, APIError } = globalThis as unknown as { OpenAI: any; APIError: any };
        const client = new OpenAI({ apiKey: key, baseURL: `${gateway}/v1`, dangerouslyAllowBrowser: true, maxRetries: 0 });
        const { data, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }).withResponse();
        const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stream: true });
        let streamed = '';
        for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
        let error: { status: number; code: string; requestID: string | null; isApiError: boolean } | null = null;
        try {
          await new OpenAI({ apiKey: 'sk-ditto-wrong-000000000000000', baseURL: `${gateway}/v1`, dangerouslyAllowBrowser: true, maxRetries: 0 }).models.list();
        } catch (e) {
          const err = e as { status: number; code: string; requestID: string | null };
          error = { status: err.status, code: err.code, requestID: err.requestID, isApiError: e instanceof APIError };
        }
        return { content: data.choices[0].message.content, requestId: data._request_id, limit: response.headers.get('x-ratelimit-limit-requests'), streamed, error };
      },
      { gateway: gateway.url, key: KEY },
    );
    expect(result.content).toBe('Hello from the');
    expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.limit).toBe('1000');
    expect(result.streamed).toBe('Hello from the mock');
    expect(result.error).toMatchObject({ status: 401, code: 'invalid_api_key', isApiError: true });
    expect(result.error!.requestID).toBeTruthy();
    // The SDK's own headers went through the preflight and reached the gateway.
    expect(upstream.requests[0].headers['user-agent']).toBeDefined();
  }, 30_000);

  it('opens a realtime session with the key in a subprotocol, as browsers must', async () => {
    await page.goto(allowed.url);
    const result = await page.evaluate(
      async ({ gateway, key }) =>
        new Promise<{ protocol: string; first: string; done: boolean }>((resolve, reject) => {
          const ws = new WebSocket(`${gateway.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime', `openai-insecure-api-key.${key}`]);
          const seen: string[] = [];
          ws.onmessage = (event) => {
            const message = JSON.parse(event.data as string);
            seen.push(message.type);
            if (message.type === 'session.created') ws.send(JSON.stringify({ type: 'response.create' }));
            if (message.type === 'response.done') {
              ws.close(1000);
              resolve({ protocol: ws.protocol, first: seen[0], done: true });
            }
          };
          ws.onerror = () => reject(new Error('websocket error'));
        }),
      { gateway: gateway.url, key: KEY },
    );
    expect(result).toEqual({ protocol: 'realtime', first: 'session.created', done: true });
    expect(realtime.sessions.at(-1)!.headers.authorization).toBeUndefined();
  });

  it('a page from an origin that is not allowed is blocked: no request reaches the upstream, no session opens', async () => {
    const sessionsBefore = realtime.sessions.length;
    await page.goto(other.url);
    const result = await page.evaluate(
      async ({ gateway, key }) => {
        let fetchError = '';
        try {
          await fetch(`${gateway}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
          });
        } catch (error) {
          fetchError = (error as Error).name;
        }
        const socket = await new Promise<string>((resolve) => {
          const ws = new WebSocket(`${gateway.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime', `openai-insecure-api-key.${key}`]);
          ws.onopen = () => resolve('open');
          ws.onclose = (event) => resolve(`closed ${event.code}`);
        });
        return { fetchError, socket };
      },
      { gateway: gateway.url, key: KEY },
    );
    expect(result.fetchError).toBe('TypeError');
    expect(result.socket).toBe('closed 1006');
    expect(upstream.requests).toHaveLength(0);
    expect(realtime.sessions.length).toBe(sessionsBefore);
  });
});
