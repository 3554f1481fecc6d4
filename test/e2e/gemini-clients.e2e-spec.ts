import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ApiError, GoogleGenAI } from '@google/genai';
import { AuditService } from '../../src/audit/audit.service';
import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { CACHED_CONTENT_TOKENS, GEMINI_REPLY, GeminiMock, THOUGHT_TOKENS, startGeminiMock } from '../fixtures/gemini-faithful-mock';
import { ADMIN_TOKEN, RunningGateway, adminGet, startGateway } from './harness';
import { rawHttp } from './raw-http';

const KEY = 'sk-ditto-gemini-0123456789abcdefghijklm';
const LIMITED = 'sk-ditto-gemini-limited-0123456789abcde';
const COUNT_ONLY = 'sk-ditto-gemini-countonly-0123456789abc';
const UPSTREAM_KEY = 'AIza-upstream-secret-0123456789';
const MODEL = 'gemini-2.5-flash';
/** LiteLLM's entry (USD per token): cached prompt tokens at their own price. */
const PRICE = { input_cost_per_token: 3e-7, output_cost_per_token: 2.5e-6, cache_read_input_token_cost: 7.5e-8, max_output_tokens: 65_535 };

interface Meta {
  promptTokenCount?: number;
  candidatesTokenCount?: number;
  cachedContentTokenCount?: number;
  thoughtsTokenCount?: number;
}
const tokensOf = (u: Meta) => (u.promptTokenCount ?? 0) + (u.candidatesTokenCount ?? 0) + (u.thoughtsTokenCount ?? 0);
function costOf(u: Meta): number {
  const cached = u.cachedContentTokenCount ?? 0;
  const pico = ((u.promptTokenCount ?? 0) - cached) * 300_000 + cached * 75_000 + ((u.candidatesTokenCount ?? 0) + (u.thoughtsTokenCount ?? 0)) * 2_500_000;
  return Math.ceil(pico / 1_000_000);
}

/**
 * The Google Gen AI SDK (`@google/genai`) unchanged but for its base URL and key, through the gateway to
 * an upstream that answers like the Gemini API (test/fixtures/gemini-faithful-mock.ts): keys, budgets
 * (cached and thinking tokens at their prices) and audit as for every client, errors in Google's shape.
 */
describe('Gemini clients through the gateway (e2e)', () => {
  let upstream: GeminiMock;
  let gateway: RunningGateway;
  let dir: string;
  let ai: GoogleGenAI;

  beforeAll(async () => {
    upstream = await startGeminiMock(UPSTREAM_KEY);
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-gemini-'));
    writeFileSync(path.join(dir, 'prices.json'), JSON.stringify({ [MODEL]: PRICE }));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [{ name: 'google', type: 'gemini', base_url: upstream.url, api_key: UPSTREAM_KEY, model_map: { 'gemini-flash': MODEL } }],
        router: { default_backends: ['google'] },
        virtual_keys: [
          { id: 'gem', token: KEY, models: ['gemini-*'], budget: { total_tokens: 100_000_000, total_usd_micros: 100_000_000 } },
          { id: 'gem-limited', token: LIMITED, budget: { total_tokens: 600 } },
          { id: 'gem-count', token: COUNT_ONLY, allowed_routes: ['/v1beta/models/*:countTokens'] },
        ],
      }),
    );
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), PRICING_FILE: path.join(dir, 'prices.json'), ADMIN_TOKEN, AUDIT_FLUSH_MS: '20' });
    ai = new GoogleGenAI({ apiKey: KEY, httpOptions: { baseUrl: gateway.url } });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
    upstream.answers.length = 0;
  });

  async function lastRow(): Promise<Record<string, any>> {
    await gateway.app.get(AuditService).flush();
    const items = (await gateway.app.get(AuditLogRepository).query({}, 1000, null)).items.filter((r) => r.kind.startsWith('proxy'));
    return items.reduce((a, b) => (a.id >= b.id ? a : b)).payload as Record<string, any>;
  }
  const spent = async () => ({
    tokens: (await adminGet(gateway, '/admin/budgets/key:gem')).body.spent_tokens as number,
    usdMicros: (await adminGet(gateway, '/admin/costs/key:gem')).body.spent_usd_micros as number,
  });

  it('generateContent: the backend key upstream, usage (cached and thinking tokens included) charged at its prices', async () => {
    const before = await spent();
    const answer = await ai.models.generateContent({
      model: MODEL,
      contents: 'Weather in Paris?',
      config: { systemInstruction: 'Be brief.', maxOutputTokens: 200, thinkingConfig: { thinkingBudget: 64 }, cachedContent: 'cachedContents/weather-1' },
    });
    expect(answer.text).toBe(GEMINI_REPLY);
    const usage = answer.usageMetadata!;
    expect(usage).toMatchObject({ cachedContentTokenCount: CACHED_CONTENT_TOKENS, thoughtsTokenCount: THOUGHT_TOKENS });

    const [sent] = upstream.requests;
    expect(sent.url).toBe(`/v1beta/models/${MODEL}:generateContent`);
    expect(sent.headers['x-goog-api-key']).toBe(UPSTREAM_KEY);
    expect(JSON.stringify(sent.headers)).not.toContain(KEY);
    expect(sent.json.generationConfig.maxOutputTokens).toBe(200);

    const after = await spent();
    expect(after.tokens - before.tokens).toBe(tokensOf(usage));
    expect(after.usdMicros - before.usdMicros).toBe(costOf(usage));
    expect(await lastRow()).toMatchObject({ protocol: 'gemini', path: `/v1beta/models/${MODEL}:generateContent`, model: MODEL, backend: 'google', status: 200, usage: { cached_tokens: CACHED_CONTENT_TOKENS } });
  });

  it('generateContentStream: chunks arrive as sent, the last usageMetadata is charged', async () => {
    const before = await spent();
    const stream = await ai.models.generateContentStream({ model: MODEL, contents: 'Stream the weather', config: { maxOutputTokens: 100 } });
    let text = '';
    let usage: Meta = {};
    for await (const chunk of stream) {
      text += chunk.text ?? '';
      usage = chunk.usageMetadata ?? usage;
    }
    expect(text).toBe(GEMINI_REPLY);
    expect(upstream.requests[0].url).toBe(`/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`);
    const after = await spent();
    expect(after.tokens - before.tokens).toBe(tokensOf(usage));
    expect(after.usdMicros - before.usdMicros).toBe(costOf(usage));
    expect(await lastRow()).toMatchObject({ protocol: 'gemini', stream: true, status: 200, charged: { basis: 'usage' } });

    // Raw, with the key in the query: the body arrives byte for byte, the key stays at the gateway.
    const raw = await fetch(`${gateway.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse&key=${KEY}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"contents":[{"role":"user","parts":[{"text":"x"}]}]}',
    });
    expect(raw.status).toBe(200);
    expect(await raw.text()).toBe(upstream.answers.at(-1));
    expect(upstream.requests.at(-1)!.url).toBe(`/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`);
    // Nor does it reach the logs or the audit trail.
    await gateway.app.get(AuditService).flush();
    expect(JSON.stringify(gateway.logs)).not.toContain(KEY);
    expect(JSON.stringify((await gateway.app.get(AuditLogRepository).query({}, 1000, null)).items)).not.toContain(KEY);
  });

  it('countTokens answers and is not charged; the model map applies to the path', async () => {
    const before = await spent();
    const counted = await ai.models.countTokens({ model: 'gemini-flash', contents: 'How many?' });
    expect(counted.totalTokens).toBeGreaterThan(0);
    expect(upstream.requests[0].url).toBe(`/v1beta/models/${MODEL}:countTokens`);
    expect(await spent()).toEqual(before);
    expect(await lastRow()).toMatchObject({ protocol: 'gemini', model: 'gemini-flash', status: 200, charged: null });
  });

  it('strict mode sets generationConfig.maxOutputTokens within what the budget has left', async () => {
    const limited = new GoogleGenAI({ apiKey: LIMITED, httpOptions: { baseUrl: gateway.url } });
    await limited.models.generateContent({ model: MODEL, contents: 'hi', config: { temperature: 0.5 } });
    const config = upstream.requests.at(-1)!.json.generationConfig;
    expect(config.temperature).toBe(0.5);
    expect(config.maxOutputTokens).toBeGreaterThan(0);
    expect(config.maxOutputTokens).toBeLessThan(600);
  });

  it("refusals come in Google's error shape, before and after the body is read", async () => {
    const wrong = new GoogleGenAI({ apiKey: 'sk-ditto-wrong-0123456789abcdef', httpOptions: { baseUrl: gateway.url } });
    const refused = await wrong.models.generateContent({ model: MODEL, contents: 'hi' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(401);
    const raw = await fetch(`${gateway.url}/v1beta/models/gemini-2.5-pro-x:generateContent?key=sk-ditto-wrong-0123456789abcdef`, { method: 'POST', body: '{}' });
    expect(raw.status).toBe(401);
    expect(await raw.json()).toMatchObject({ error: { code: 401, status: 'UNAUTHENTICATED', message: expect.any(String) } });
    // Allow-list (after the body), budget, a stream not asked as SSE, an unknown method: each in Google's shape, nothing upstream.
    const call = (url: string, key: string, body: object) =>
      fetch(`${gateway.url}${url}`, { method: 'POST', headers: { 'x-goog-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    const contents = [{ role: 'user', parts: [{ text: 'hi' }] }];
    expect(await call('/v1beta/models/claude-sonnet-4-5:generateContent', KEY, { contents })).toMatchObject({ status: 403, body: { error: { code: 403, status: 'PERMISSION_DENIED' } } });
    expect(await call(`/v1beta/models/${MODEL}:generateContent`, LIMITED, { contents: [{ role: 'user', parts: [{ text: 'x'.repeat(10_000) }] }] })).toMatchObject({
      status: 402,
      body: { error: { code: 402, status: 'RESOURCE_EXHAUSTED', details: [{ reason: 'BUDGET_EXCEEDED' }] } },
    });
    expect(await call(`/v1beta/models/${MODEL}:streamGenerateContent`, KEY, { contents })).toMatchObject({ status: 400, body: { error: { status: 'INVALID_ARGUMENT', message: expect.stringContaining('alt=sse') } } });
    expect(await call(`/v1beta/models/${MODEL}:embedContent`, KEY, { contents })).toMatchObject({ status: 404, body: { error: { status: 'NOT_FOUND' } } });
    // allowed_routes by the full path: this key may count tokens and nothing else.
    expect(await call(`/v1beta/models/${MODEL}:generateContent`, COUNT_ONLY, { contents })).toMatchObject({ status: 403, body: { error: { code: 403, status: 'PERMISSION_DENIED' } } });
    expect(upstream.requests).toEqual([]);
    expect((await call(`/v1beta/models/${MODEL}:countTokens`, COUNT_ONLY, { contents })).status).toBe(200);
  });

  it("a path the front door refuses before any route (an empty segment, dot segments) is answered in Google's error shape", async () => {
    for (const target of ['/v1beta/models//gemini-2.5-flash:generateContent', '/v1beta/models/../models/gemini-2.5-flash:countTokens']) {
      const answer = await rawHttp(gateway.url, 'POST', target, { 'x-goog-api-key': KEY, 'content-type': 'application/json' }, '{}');
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body)).toEqual({
        error: {
          code: 400,
          message: expect.any(String),
          status: 'INVALID_ARGUMENT',
          details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'INVALID_REQUEST', domain: 'ditto-gateway' }],
        },
      });
    }
  });

  it('metrics count requests by protocol, Gemini routes labelled without their model', async () => {
    await ai.models.generateContent({ model: MODEL, contents: 'count me' });
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('ditto_proxy_requests_total{') && l.includes('route="/v1beta/models/*:generateContent"') && l.includes('status="200"'));
    expect(line).toContain('protocol="gemini"');
    expect(text).not.toContain(MODEL + ':generateContent');
  });
});
