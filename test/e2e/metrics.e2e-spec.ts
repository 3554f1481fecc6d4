import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, RunningGateway, admin, startGateway } from './harness';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition format strictly enough to fail on a malformed line. */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?(?:[0-9.e+-]+|NaN|\+Inf|-Inf))(?: -?\d+)?$/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    if (raw.startsWith('# HELP ')) continue;
    if (raw.startsWith('# TYPE ')) {
      const [, , name, type] = raw.split(' ');
      expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(type);
      types.set(name, type);
      continue;
    }
    const match = line.exec(raw);
    if (!match) throw new Error(`not a Prometheus sample line: ${raw}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(label)) labels[key] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return { samples, types };
}

describe('GET /metrics (e2e)', () => {
  let upstream: MockUpstream;
  let gateway: RunningGateway;
  let token: string;

  const scrape = async () => {
    const response = await fetch(`${gateway.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return parsePrometheus(await response.text());
  };
  const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

  beforeAll(async () => {
    upstream = await startMockUpstream({ replyTokens: 5 });
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', UPSTREAM_BASE_URL: upstream.url, ADMIN_TOKEN, AUDIT_FLUSH_MS: '20' });
    token = (await admin(gateway, 'POST', '/admin/keys', { id: 'metrics-key', budget: { total_tokens: 100 } })).body.token;
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it('parses as Prometheus text, and its counters move with traffic', async () => {
    const before = (await scrape()).samples;
    const chat = (auth: string, maxTokens = 5, n = 1) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens, n }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { usage: { total_tokens: number } } }));
    const ok = await Promise.all([chat(token), chat(token), chat(token)]);
    expect(ok.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await chat('sk-ditto-wrong')).status).toBe(401);
    // 128 choices cannot fit in what is left of 100 tokens, not even capped to one token each (strict mode).
    expect((await chat(token, 500, 128)).status).toBe(402);

    const { samples, types } = await scrape();
    const route = '/v1/chat/completions';
    const delta = (name: string, labels: Record<string, string> = {}) => value(samples, name, labels) - value(before, name, labels);
    expect(types.get('ditto_proxy_requests_total')).toBe('counter');
    expect(delta('ditto_proxy_requests_total', { route, status: '200', backend: 'default' })).toBe(3);
    expect(delta('ditto_proxy_requests_total', { route, status: '401' })).toBe(1);
    expect(delta('ditto_proxy_refusals_total', { code: 'invalid_api_key' })).toBe(1);
    expect(delta('ditto_proxy_refusals_total', { code: 'budget_exceeded' })).toBe(1);
    expect(types.get('ditto_proxy_overhead_seconds')).toBe('histogram');
    expect(delta('ditto_proxy_overhead_seconds_count', { route })).toBe(3);
    expect(delta('ditto_proxy_upstream_duration_seconds_count', { backend: 'default' })).toBe(3);
    const charged = ok.reduce((sum, r) => sum + r.body.usage.total_tokens, 0);
    expect(delta('ditto_tokens_charged_total')).toBe(charged);
    expect(value(samples, 'ditto_budget_reservations_in_flight')).toBe(0);
    expect(types.get('ditto_audit_queue_depth')).toBe('gauge');
    // No key ids in labels unless METRICS_KEY_LABELS=true.
    expect(samples.some((s) => 'key_id' in s.labels)).toBe(false);
    expect(samples.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
  });
});
