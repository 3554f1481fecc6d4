import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ChildGateway, requireBuild, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN } from './harness';

describe('graceful shutdown on SIGTERM (e2e, child process)', () => {
  let dir: string;
  let upstream: MockUpstream;
  let gateway: ChildGateway | undefined;

  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-drain-'));
    upstream = await startMockUpstream({ chunkDelayMs: 100 });
  });

  afterAll(async () => {
    if (gateway && gateway.process.exitCode === null && gateway.process.signalCode === null) gateway.process.kill('SIGKILL');
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('turns /ready 503 at once, keeps serving through the grace period, finishes a stream in flight, and exits 0', async () => {
    gateway = await startChildGateway(
      { STORAGE_BACKEND: 'sqlite', SQLITE_PATH: path.join(dir, 'ditto.sqlite'), UPSTREAM_BASE_URL: upstream.url, ADMIN_TOKEN, SHUTDOWN_GRACE_MS: '1500' },
      dir,
    );
    const url = gateway.url;
    const created = await fetch(`${url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'drain' }),
    });
    const { token } = (await created.json()) as { token: string };
    const chat = (stream: boolean, maxTokens: number) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens, stream }),
      });
    expect((await fetch(`${url}/ready`)).status).toBe(200);

    // About 2.5 s of stream (25 chunks, 100 ms apart): longer than the grace period.
    const streaming = chat(true, 23).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 200));
    const signalledAt = Date.now();
    gateway.process.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));

    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { error: { message: string } }).error.message).toContain('draining');
    expect((await fetch(`${url}/health`)).status).toBe(200);
    // New requests during the grace period are still served.
    expect((await chat(false, 2)).status).toBe(200);

    const body = await streaming;
    expect(body).toContain('data: [DONE]');
    expect(body.match(/"content":"[^"]+"/g)).toHaveLength(23);
    expect(await gateway.exited).toBe(0);
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(1500);
    const messages = gateway.logs.map((l) => String(l.msg));
    expect(messages.some((m) => m.startsWith('SIGTERM: draining for 1500 ms'))).toBe(true);
    expect(messages.some((m) => m.startsWith('stopped:'))).toBe(true);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  }, 20_000);
});
