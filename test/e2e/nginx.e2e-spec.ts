import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import WebSocket from 'ws';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { MockRealtime, attachMockRealtime } from '../fixtures/mock-realtime';
import { BackendEnv, backendEnv } from './backends';
import { ChildGateway, requireBuild, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN, freePort, within } from './harness';
import { RunningNginx, SHIPPED_CONF, findNginx, nginxVersion, renderNginxConf, startNginx } from './nginx';

const NGINX = findNginx();

/** One request written by hand, so the path reaches nginx exactly as given (fetch would normalise it). */
function rawRequest(base: string, head: string, body = ''): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      const length = body ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` : '';
      socket.write(`${head}\r\nHost: ${hostname}\r\n${length}Connection: close\r\n\r\n${body}`);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0), text: data }));
    socket.on('error', reject);
  });
}

describe('deploy/nginx.conf, rendered for a test process', () => {
  const shipped = readFileSync(SHIPPED_CONF, 'utf8');
  const rendered = renderNginxConf(shipped, ['127.0.0.1:1001', '127.0.0.1:1002'], 1003, '/tmp/x');

  it('keeps every proxy directive of the shipped file; only pid, listen, upstream addresses and temp paths differ', () => {
    const lines = (text: string) => text.split('\n').map((l) => l.trim());
    const removed = lines(shipped).filter((l) => !lines(rendered).includes(l));
    const added = lines(rendered).filter((l) => !lines(shipped).includes(l));
    expect(removed).toEqual([
      'pid /var/run/nginx.pid;',
      'server gateway-1:8080 resolve max_fails=1 fail_timeout=5s;',
      'server gateway-2:8080 resolve max_fails=1 fail_timeout=5s;',
      'listen 80;',
    ]);
    expect(added).toEqual([
      'pid /tmp/x/nginx.pid;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path /tmp/x/${t}_temp;`),
      'server 127.0.0.1:1001 max_fails=1 fail_timeout=5s;',
      'server 127.0.0.1:1002 max_fails=1 fail_timeout=5s;',
      'listen 127.0.0.1:1003;',
    ]);
  });
});

if (!NGINX) {
  process.stderr.write('\n*** nginx e2e SKIPPED: nginx is not installed (`apt-get install nginx`; .ci/run installs it) ***\n\n');
}

(NGINX ? describe : describe.skip)(
  `nginx ${NGINX ? nginxVersion(NGINX) : '(not installed: apt-get install nginx)'} with deploy/nginx.conf in front of two replicas (e2e, child processes)`,
  () => {
    let store: BackendEnv;
    let upstream: MockUpstream;
    let realtime: MockRealtime;
    let dir: string;
    let env: Record<string, string>;
    const replicas: Array<{ port: number; gateway: ChildGateway }> = [];
    let nginx: RunningNginx;
    let token: string;

    const start = (port: number) => startChildGateway({ ...env, PORT: String(port) }, dir);
    const chatBody = (extra: Record<string, unknown> = {}) =>
      JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 4, ...extra });
    const chat = (extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
      fetch(`${nginx.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: chatBody(extra),
        signal,
      });
    /** Requests of the key a replica logged as served (its access log). */
    const served = (gateway: ChildGateway) => gateway.logs.filter((l) => l.context === 'Access' && l.key_id === 'through-nginx').length;

    beforeAll(async () => {
      requireBuild();
      store = await backendEnv('redis');
      upstream = await startMockUpstream();
      realtime = attachMockRealtime(upstream.server);
      dir = mkdtempSync(path.join(tmpdir(), 'ditto-nginx-e2e-'));
      env = { ...store.env, ADMIN_TOKEN, UPSTREAM_BASE_URL: upstream.url, CHANGE_FEED_POLL_MS: '50', SHUTDOWN_GRACE_MS: '1000' };
      for (const port of [await freePort(), await freePort()]) replicas.push({ port, gateway: await start(port) });
      nginx = await startNginx(NGINX!, replicas.map((r) => `127.0.0.1:${r.port}`), await freePort());
      const created = await fetch(`${nginx.url}/admin/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'through-nginx' }),
      });
      expect(created.status).toBe(201);
      token = ((await created.json()) as { token: string }).token;
      // Both replicas know the key (change feed) before the tests send it to either.
      for (const { gateway } of replicas) {
        await within(2000, async () => (await fetch(`${gateway.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status === 200);
      }
    }, 40_000);

    afterEach(() => {
      upstream.options = {};
    });

    afterAll(async () => {
      await nginx?.stop();
      for (const { gateway } of replicas) {
        if (gateway.process.exitCode === null && gateway.process.signalCode === null) {
          gateway.process.kill('SIGTERM');
          await gateway.exited;
        }
      }
      await upstream?.close();
      await store?.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }, 30_000);

    it('delivers server-sent events chunk by chunk, as the upstream sends them (no proxy buffering)', async () => {
      upstream.options = { chunkDelayMs: 150 };
      const response = await chat({ stream: true, max_tokens: 6 });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const arrivals: number[] = [];
      const decoder = new TextDecoder();
      let text = '';
      const reader = response.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const chunk = decoder.decode(value, { stream: true });
        text += chunk;
        for (let i = 0; i < (chunk.match(/^data: /gm) ?? []).length; i++) arrivals.push(Date.now());
      }
      // role chunk, 6 words, finish chunk, [DONE]: 150 ms apart at the upstream.
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      expect(arrivals).toHaveLength(9);
      // Buffered, they would arrive together at the end; streamed, the first ~1 s before the last.
      expect(arrivals[arrivals.length - 1] - arrivals[0]).toBeGreaterThan(800);
      const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
      expect(gaps.filter((g) => g >= 100).length).toBeGreaterThanOrEqual(6);
    });

    it('passes a realtime WebSocket upgrade on (location = /v1/realtime): messages both ways, close codes relayed', async () => {
      const ws = new WebSocket(`${nginx.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, { headers: { authorization: `Bearer ${token}` } });
      const messages: any[] = [];
      ws.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString('utf8'))));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
        ws.once('error', reject);
      });
      ws.send(JSON.stringify({ type: 'response.create' }));
      await within(3000, () => messages.some((m) => m.type === 'response.done'));
      expect(messages[0].type).toBe('session.created');
      const session = realtime.sessions.at(-1)!;
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      ws.close(4000, 'bye');
      expect(await closed).toBe(4000);
      await within(3000, () => session.closed !== null);
      expect(session.closed).toEqual({ code: 4000, reason: 'bye' });
    });

    it('passes a client abort on to the upstream: its connection closes within 1 s', async () => {
      upstream.options = { chunkDelayMs: 200 };
      const controller = new AbortController();
      // 50 words 200 ms apart: the stream would run 10 s if nothing stopped it.
      const response = await chat({ stream: true, max_tokens: 50, messages: [{ role: 'user', content: 'abort me' }] }, controller.signal);
      const reader = response.body!.getReader();
      await reader.read();
      const streamed = upstream.requests.find((r) => r.body?.messages?.[0]?.content === 'abort me');
      expect(streamed?.connectionClosed()).toBe(false);
      controller.abort();
      expect(await within(1000, () => streamed!.connectionClosed())).toBeLessThan(1000);
    });

    it('passes an 8 MiB upload sent with `Expect: 100-continue` byte for byte', async () => {
      // Text (the mock upstream keeps bodies as strings), random so nothing in between can compress it.
      // A transcription upload as clients send it: multipart, the audio file and the model.
      const boundary = 'ditto-nginx-upload';
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n`),
        Buffer.from(randomBytes(6 * 1024 * 1024).toString('base64')),
        Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--${boundary}--\r\n`),
      ]);
      const { hostname, port } = new URL(nginx.url);
      const result = await new Promise<{ status: number; continued: boolean; text: string }>((resolve, reject) => {
        let continued = false;
        const req = httpRequest({
          host: hostname,
          port: Number(port),
          method: 'POST',
          path: '/v1/audio/transcriptions',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': `multipart/form-data; boundary=${boundary}`,
            'content-length': body.length,
            expect: '100-continue',
          },
        });
        // The body goes out only after the interim answer, as a careful client does.
        req.on('continue', () => {
          continued = true;
          req.end(body);
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, continued, text }));
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      expect(result).toMatchObject({ status: 200, continued: true });
      const received = upstream.requests.filter((r) => r.url === '/v1/audio/transcriptions').pop();
      expect(received?.raw.length).toBe(body.length);
      expect(createHash('sha256').update(received!.raw).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
    }, 30_000);

    it('loses no request during a rolling restart of both replicas behind it', async () => {
      let running = true;
      const statuses = new Map<number | string, number>();
      const worker = async () => {
        while (running) {
          let status: number | string;
          try {
            const response = await chat({ max_tokens: 2 });
            await response.arrayBuffer();
            status = response.status;
          } catch (error) {
            status = (error as Error).message;
          }
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      };
      const load = Promise.all(Array.from({ length: 8 }, worker));
      for (const i of [0, 1]) {
        await new Promise((r) => setTimeout(r, 300));
        const old = replicas[i].gateway;
        old.process.kill('SIGTERM');
        expect(await old.exited).toBe(0);
        replicas[i].gateway = await start(replicas[i].port);
        // As an operator waits for the replica to be healthy before the next one: here, until nginx
        // sends it requests again (after fail_timeout), so the two are never down at once.
        const restarted = replicas[i].gateway;
        await within(10_000, () => served(restarted) > 0);
      }
      await new Promise((r) => setTimeout(r, 300));
      running = false;
      await load;
      expect(Object.fromEntries(statuses)).toEqual({ 200: expect.any(Number) });
      expect(statuses.get(200)).toBeGreaterThan(50);
    }, 60_000);

    // The admin guard must see the path as the gateway routes it, however it is spelled on the wire:
    // nginx passes the request line on as sent (proxy_pass without a URI part). No token: never 2xx,
    // and nothing is created. Fails until the admin guard fix of the security issue is merged
    // (`POST /%61dmin/keys` is answered 201 by the gateway itself, with or without nginx).
    it('never answers 2xx to an admin route spelled with encoded or dotted segments, without a token', async () => {
      const body = JSON.stringify({ id: 'sneaky' });
      const spellings = [
        '/%61dmin/keys',
        '/%61%64%6d%69%6e/keys',
        '/admin%2fkeys',
        '/%2561dmin/keys',
        '/admin/%6beys',
        '//admin/keys',
        '/./admin/keys',
        '/v1/../admin/keys',
        '/v1/%2e%2e/admin/keys',
        '/ADMIN/keys',
        '/admin/keys/',
        '/admin;x=1/keys',
      ];
      const answers: Record<string, number> = {};
      for (const spelling of spellings) answers[spelling] = (await rawRequest(nginx.url, `POST ${spelling} HTTP/1.1`, body)).status;
      expect(Object.entries(answers).filter(([, status]) => status >= 200 && status < 300)).toEqual([]);
      for (const { gateway } of replicas) {
        const sneaky = await fetch(`${gateway.url}/admin/keys/sneaky`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
        expect(sneaky.status).toBe(404);
      }
    });
  },
);
