import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, RunningGateway, admin, startGateway, within } from './harness';

const UPSTREAM_KEY = 'sk-upstream-very-secret-0123456789';

describe('request logs (e2e)', () => {
  let upstream: MockUpstream;
  let gateway: RunningGateway;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', UPSTREAM_BASE_URL: upstream.url, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it('writes one JSON line per request with the request id, and never a secret', async () => {
    const created = await admin(gateway, 'POST', '/admin/keys', { id: 'log-key' });
    const token = created.body.token as string;
    const send = (auth: string, requestId: string) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json', 'x-request-id': requestId },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
      });
    const ok = await send(token, 'trace-ok-1');
    expect(ok.headers.get('x-ditto-request-id')).toBe('trace-ok-1');
    expect(upstream.requests.at(-1)!.headers['x-request-id']).toBe('trace-ok-1');
    const wrongToken = 'sk-ditto-notarealkey0123456789abcdef';
    expect((await send(wrongToken, 'trace-denied-1')).status).toBe(401);

    await within(2000, () => gateway.logs.some((l) => l.request_id === 'trace-denied-1'));
    const line = gateway.logs.find((l) => l.request_id === 'trace-ok-1');
    expect(line).toMatchObject({ level: 'info', context: 'Access', status: 200, key_id: 'log-key', backend: 'default', tokens: expect.any(Number) });
    expect(typeof line!.time).toBe('string');
    expect(gateway.logs.find((l) => l.request_id === 'trace-denied-1')).toMatchObject({ status: 401, error: 'invalid_api_key' });

    const everything = JSON.stringify(gateway.logs);
    for (const secret of [token, wrongToken, UPSTREAM_KEY, ADMIN_TOKEN]) expect(everything).not.toContain(secret);
  });
});

describe('prompt and completion bodies in the audit trail (e2e)', () => {
  let upstream: MockUpstream;

  beforeAll(async () => {
    upstream = await startMockUpstream({ replyTokens: 3 });
  });

  afterAll(async () => {
    await upstream?.close();
  });

  /** One chat request through a fresh gateway with `env`; returns the stored `proxy` audit payload. */
  async function auditedChat(env: Record<string, string>): Promise<Record<string, unknown>> {
    const gateway = await startGateway({ STORAGE_BACKEND: 'memory', UPSTREAM_BASE_URL: upstream.url, ADMIN_TOKEN, AUDIT_FLUSH_MS: '20', ...env });
    try {
      const token = (await admin(gateway, 'POST', '/admin/keys', { id: 'bodies' })).body.token as string;
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a secret prompt' }], max_tokens: 3 }),
      });
      expect(response.status).toBe(200);
      let rows: Array<{ kind: string; payload: Record<string, unknown> }> = [];
      await within(2000, async () => {
        rows = (await admin(gateway, 'GET', '/admin/audit?kind=proxy&key_id=bodies')).body.items;
        return rows.length > 0;
      });
      return rows[0].payload;
    } finally {
      await gateway.close();
    }
  }

  it('stores neither by default, and both with AUDIT_LOG_BODIES=true', async () => {
    const plain = await auditedChat({});
    expect(JSON.stringify(plain)).not.toContain('a secret prompt');
    expect(plain).not.toHaveProperty('request_body');
    expect(plain).not.toHaveProperty('response_body');

    const logged = await auditedChat({ AUDIT_LOG_BODIES: 'true' });
    expect(logged.request_body).toMatchObject({ messages: [{ role: 'user', content: 'a secret prompt' }] });
    expect(JSON.parse(logged.response_body as string).choices[0].message.content).toBe('Hello from the');
  });
});
