import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { Balancer, startBalancer } from '../../bench/round-robin-lb';
import { BackendEnv, backendEnv } from './backends';
import { ChildGateway, requireBuild, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN, freePort, within } from './harness';

const adminCall = async (base: string, method: string, url: string, body?: unknown) => {
  const response = await fetch(`${base}${url}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
};

describe.each(['redis', 'postgres'] as const)('two replicas on %s behind a round-robin balancer (e2e, child processes)', (backend) => {
  let store: BackendEnv;
  let upstream: MockUpstream;
  let dir: string;
  let env: Record<string, string>;
  const replicas: Array<{ port: number; gateway: ChildGateway }> = [];
  let lb: Balancer;

  const start = async (port: number) => startChildGateway({ ...env, PORT: String(port) }, dir);
  const url = (i: number) => replicas[i].gateway.url;

  beforeAll(async () => {
    requireBuild();
    store = await backendEnv(backend);
    upstream = await startMockUpstream({ delayMs: 2 });
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-replicas-'));
    env = {
      ...store.env,
      ADMIN_TOKEN,
      UPSTREAM_BASE_URL: upstream.url,
      CHANGE_FEED_POLL_MS: '50',
      AUDIT_FLUSH_MS: '50',
      SHUTDOWN_GRACE_MS: '600',
    };
    for (const port of [await freePort(), await freePort()]) replicas.push({ port, gateway: await start(port) });
    lb = await startBalancer([url(0), url(1)], 0, 50);
  }, 30_000);

  afterAll(async () => {
    await lb?.close();
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

  it('shares keys (< 1 s), budgets and the audit trail between replicas', async () => {
    const created = await adminCall(url(0), 'POST', '/admin/keys', { id: 'shared', tenant_id: 'acme', budget: { total_tokens: 1_000_000 } });
    expect(created.status).toBe(201);
    const token = created.body.token as string;
    const elapsed = await within(1000, async () => (await fetch(`${url(1)}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status === 200);
    expect(elapsed).toBeLessThan(1000);

    const chat = () =>
      fetch(`${lb.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { usage: { total_tokens: number } } }));
    const answers = await Promise.all(Array.from({ length: 20 }, chat));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const spent = answers.reduce((sum, a) => sum + a.body.usage.total_tokens, 0);

    await within(3000, async () => (await adminCall(url(0), 'GET', '/admin/budgets/tenant:acme')).body.reserved_tokens === 0);
    for (const i of [0, 1]) {
      expect((await adminCall(url(i), 'GET', '/admin/budgets/key:shared')).body).toMatchObject({ spent_tokens: spent, reserved_tokens: 0 });
    }
    // Both replicas served (round robin: their access logs), and either one's audit API sees every request.
    for (const i of [0, 1]) {
      expect(replicas[i].gateway.logs.filter((l) => l.context === 'Access' && l.key_id === 'shared' && l.status === 200).length).toBeGreaterThan(0);
    }
    type Row = { request_id: string; payload: { path: string } };
    const chats = async (i: number) =>
      ((await adminCall(url(i), 'GET', '/admin/audit?kind=proxy&key_id=shared&limit=1000')).body.items as Row[]).filter((r) => r.payload.path === '/v1/chat/completions');
    await within(3000, async () => (await chats(1)).length === 20);
    expect(new Set((await chats(0)).map((r) => r.request_id)).size).toBe(20);
  }, 20_000);

  it('loses no request during a rolling restart of both replicas under steady load', async () => {
    const token = (await adminCall(url(0), 'POST', '/admin/keys', { id: 'rolling' })).body.token as string;
    await within(1000, async () => (await fetch(`${url(1)}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status === 200);
    let running = true;
    const statuses = new Map<number | string, number>();
    const worker = async () => {
      while (running) {
        let status: number | string;
        try {
          const response = await fetch(`${lb.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'steady' }], max_tokens: 2 }),
          });
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
      // The balancer sees /ready turn 503 and takes the replica out before it stops listening.
      await within(2000, () => !lb.healthy().includes(old.url));
      expect(await old.exited).toBe(0);
      replicas[i].gateway = await start(replicas[i].port);
      await within(3000, () => lb.healthy().includes(replicas[i].gateway.url));
    }
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await load;
    expect(Object.fromEntries(statuses)).toEqual({ 200: expect.any(Number) });
    expect(statuses.get(200)).toBeGreaterThan(50);
  }, 40_000);
});
