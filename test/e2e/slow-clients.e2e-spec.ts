import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ChildGateway, requireBuild, rssBytes, sampleRss, startChildGateway } from './child-gateway';

const KEY = 'sk-ditto-slowclients-0123456789abcdef';
const SENDERS = path.resolve(__dirname, '../fixtures/slow-senders.js');
const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });

const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** Median latency (ms) of `count` authenticated chat completions, one after another on a kept-alive connection. */
async function p50(url: string, count: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const { hostname, port } = new URL(url);
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: hostname, port, agent, method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(BODY);
    });
    expect(status).toBe(200);
    samples.push(performance.now() - started);
  }
  agent.destroy();
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

describe('front door under slow and unauthenticated senders (e2e, child processes)', () => {
  let dir: string;
  let upstream: MockUpstream;
  let gateway: ChildGateway;
  let senders: ChildProcess | null = null;

  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-slow-'));
    upstream = await startMockUpstream();
    writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ backends: [{ name: 'mock', base_url: upstream.url }], virtual_keys: [{ id: 'measured', token: KEY }] }));
    gateway = await startChildGateway(
      { STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), REQUEST_HEADERS_TIMEOUT_MS: '1000', REQUEST_BODY_TIMEOUT_MS: '1000' },
      dir,
    );
  });

  afterAll(async () => {
    senders?.kill('SIGKILL');
    gateway?.process.kill('SIGKILL');
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps an authenticated client within 2x of its quiet p50, closes stalled senders by the timeouts, and bounds fds and memory', async () => {
    const { hostname, port } = new URL(gateway.url);
    await p50(gateway.url, 50); // warm-up
    const quiet = await p50(gateway.url, 200);
    const fdsBefore = openFds(gateway.pid);
    const rssBefore = rssBytes(gateway.pid);

    const closed: Array<{ kind: string; closedAfterMs: number }> = [];
    senders = spawn(process.execPath, [SENDERS, hostname, port, KEY], { stdio: ['ignore', 'pipe', 'inherit'] });
    senders.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) if (line.trim()) closed.push(JSON.parse(line));
    });
    const rss = sampleRss(gateway.pid);
    let fdPeak = 0;
    const fdSampler = setInterval(() => (fdPeak = Math.max(fdPeak, openFds(gateway.pid))), 50);
    await new Promise((r) => setTimeout(r, 1500));
    const underAttack = await p50(gateway.url, 200);
    // Every stalled sender must have been closed by its timeout (1 s) at least once by now.
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(fdSampler);
    const rssPeak = rss.stop();
    senders.kill('SIGKILL');
    senders = null;

    expect(underAttack).toBeLessThanOrEqual(2 * quiet);
    for (const kind of ['stalled-upload', 'stalled-headers']) {
      const times = closed.filter((c) => c.kind === kind).map((c) => c.closedAfterMs);
      expect([kind, times.length >= 16]).toEqual([kind, true]);
      // Closed by the 1 s timeout (Node checks headers timeouts once a second), never left open.
      // A stalled header sender is answered 408 in OpenAI's error shape first.
      expect([kind, Math.max(...times) < 3500]).toEqual([kind, true]);
    }
    // 40 hostile connections at a time plus at most 64 lingering after an early answer: descriptors stay
    // bounded, and come back once they are gone.
    expect(fdPeak - fdsBefore).toBeLessThan(120);
    expect(rssPeak - rssBefore).toBeLessThan(150 * 1024 * 1024);
    await new Promise((r) => setTimeout(r, 1500));
    expect(openFds(gateway.pid) - fdsBefore).toBeLessThan(10);
    // Nothing reached the upstream but the measured client's own requests.
    expect(upstream.requests.every((r) => r.headers['x-request-id'] !== undefined && r.body.model === 'gpt-4o-mini')).toBe(true);
    expect(upstream.requests).toHaveLength(450);
  }, 60_000);
});
