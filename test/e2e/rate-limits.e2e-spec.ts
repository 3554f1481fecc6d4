import { RunningGateway, admin, adminGet } from './harness';
import { ReplicaPair, startReplicaPair } from './replica-pair';

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

async function chat(gateway: RunningGateway, token: string, maxTokens = 8): Promise<Answer> {
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Rate me.' }], max_tokens: maxTokens }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text.startsWith('{') ? JSON.parse(text) : text };
}

async function createKey(gateway: RunningGateway, body: Record<string, unknown>): Promise<{ id: string; token: string }> {
  const created = await admin(gateway, 'POST', '/admin/keys', body);
  expect(created.status).toBe(201);
  return { id: created.body.id as string, token: created.body.token as string };
}

describe('rate limits across two replicas on redis (e2e)', () => {
  let pair: ReplicaPair;
  let a: RunningGateway;
  let b: RunningGateway;

  beforeAll(async () => {
    // Replies stop at 8 tokens, so a request's real usage is below its estimate (prompt + max_tokens).
    pair = await startReplicaPair('redis', { upstream: { replyTokens: 8 } });
    ({ a, b } = pair);
  });

  afterAll(() => pair?.close());

  it('admits at most rpm requests of 200 sent within a second across both replicas, with OpenAI-style headers, and recovers', async () => {
    const key = await createKey(a, { limits: { rpm: 60 } });
    // The key reaches replica B through the change feed.
    await new Promise((r) => setTimeout(r, 300));
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => chat(i % 2 === 0 ? a : b, key.token)));
    const ok = answers.filter((x) => x.status === 200);
    const refused = answers.filter((x) => x.status === 429);
    expect(ok.length).toBeLessThanOrEqual(60);
    expect(ok.length).toBeGreaterThanOrEqual(58);
    expect(ok.length + refused.length).toBe(200);
    for (const answer of ok) {
      expect(answer.headers.get('x-ratelimit-limit-requests')).toBe('60');
      expect(Number(answer.headers.get('x-ratelimit-remaining-requests'))).toBeGreaterThanOrEqual(0);
    }
    expect(ok.map((x) => Number(x.headers.get('x-ratelimit-remaining-requests')))).toContain(0);
    const first = refused[0];
    expect(first.body.error).toMatchObject({ code: 'rate_limited' });
    expect(first.body.error.message).toContain(`key:${key.id}`);
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const retryAfter = Number(first.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    // The real wait until the oldest counted second ages out: never more than the window.
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(Number(first.headers.get('retry-after-ms'))).toBeLessThanOrEqual(60_000);
    // No header for a limit the key does not have.
    expect(first.headers.get('x-ratelimit-limit-tokens')).toBeNull();

    // Recovers once the window has moved on, as retry-after said.
    await new Promise((r) => setTimeout(r, Number(refused.at(-1)!.headers.get('retry-after-ms')) + 200));
    expect((await chat(b, key.token)).status).toBe(200);
  }, 90_000);

  it('limits tokens per minute by the estimate, corrected by real usage', async () => {
    // Each request reserves its prompt estimate + max_tokens (~20) but uses ~prompt + 8.
    const key = await createKey(a, { limits: { tpm: 100 } });
    const first = await chat(a, key.token, 40);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-tokens')).toBe('100');
    const used = first.body.usage.total_tokens as number;
    const afterFirst = Number(first.headers.get('x-ratelimit-remaining-tokens'));
    // Admission counted the estimate (prompt + 40), more than the real usage.
    expect(afterFirst).toBeLessThan(100 - used);
    // Settle corrected it: the next admission sees only the real usage of the first.
    await new Promise((r) => setTimeout(r, 100));
    const second = await chat(b, key.token, 8);
    expect(second.status).toBe(200);
    const secondEstimate = 100 - used - Number(second.headers.get('x-ratelimit-remaining-tokens'));
    expect(secondEstimate).toBeGreaterThan(8);
    expect(secondEstimate).toBeLessThan(40);
    // A request that cannot fit the remaining tokens is refused with 429, naming tokens.
    const big = await chat(a, key.token, 90);
    expect(big.status).toBe(429);
    expect(big.body.error.message).toMatch(/tokens/);
  });

  it('applies a tenant limit set over the admin API to every key of the tenant, on both replicas', async () => {
    const put = await admin(a, 'PUT', `/admin/limits/${encodeURIComponent('tenant:rl')}`, { rpm: 5, tpm: null });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ scope: 'tenant:rl', rpm: 5, tpm: null });
    expect((await adminGet(b, `/admin/limits/${encodeURIComponent('tenant:rl')}`)).body).toMatchObject({ rpm: 5 });
    const one = await createKey(a, { tenant_id: 'rl' });
    const two = await createKey(a, { tenant_id: 'rl' });
    await new Promise((r) => setTimeout(r, 300));
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => chat(i % 2 === 0 ? a : b, i % 3 === 0 ? one.token : two.token)));
    expect(answers.filter((x) => x.status === 200).length).toBeLessThanOrEqual(5);
    const refused = answers.find((x) => x.status === 429)!;
    expect(refused.body.error.message).toContain('tenant:rl');

    expect((await admin(a, 'PUT', `/admin/limits/${encodeURIComponent('nonsense')}`, { rpm: 5 })).status).toBe(400);
    expect((await admin(a, 'PUT', `/admin/limits/${encodeURIComponent('tenant:x')}`, { rpm: 0 })).status).toBe(400);
    expect((await admin(a, 'DELETE', `/admin/limits/${encodeURIComponent('tenant:rl')}`)).status).toBe(204);
    expect((await adminGet(a, `/admin/limits/${encodeURIComponent('tenant:rl')}`)).status).toBe(404);
  });

  it('adds nothing to keys without limits: no rate-limit headers', async () => {
    const key = await createKey(a, {});
    const answer = await chat(a, key.token);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-ratelimit-limit-requests')).toBeNull();
    expect(answer.headers.get('x-ratelimit-remaining-requests')).toBeNull();
  });
});
