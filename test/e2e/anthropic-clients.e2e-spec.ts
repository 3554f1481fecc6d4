import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { AuditService } from '../../src/audit/audit.service';
import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { ANTHROPIC_REPLY, AnthropicMock, CACHE_BLOCK_TOKENS, startAnthropicMock } from '../fixtures/anthropic-faithful-mock';
import { FaithfulMock, REPLY, startFaithfulMock } from '../fixtures/openai-faithful-mock';
import { ADMIN_TOKEN, RunningGateway, adminGet, startGateway } from './harness';
import { rawHttp } from './raw-http';

const KEY = 'sk-ditto-anthropic-0123456789abcdefghij';
const LIMITED = 'sk-ditto-anthropic-limited-0123456789ab';
const SONNET_ONLY = 'sk-ditto-anthropic-sonnet-0123456789abc';
const CACHED = 'sk-ditto-anthropic-cached-0123456789abc';
const CHAT_ONLY = 'sk-ditto-anthropic-chatonly-0123456789a';
const EDGE = 'sk-ditto-anthropic-edge-0123456789abcdef';
const EDGE_TURNS = 'sk-ditto-anthropic-edge-turns-0123456789';
const UPSTREAM_KEY = 'sk-ant-upstream-secret-0123456789';
const OPENAI_UPSTREAM_KEY = 'sk-openai-upstream-secret-0123456789';
const MODEL = 'claude-sonnet-4-5';
/** LiteLLM's entry for the model (USD per token): cache writes and reads have their own prices. */
const PRICE = { input_cost_per_token: 3e-6, output_cost_per_token: 1.5e-5, cache_creation_input_token_cost: 3.75e-6, cache_read_input_token_cost: 3e-7, max_output_tokens: 64_000 };

/** USD micros of a usage at PRICE, rounded up once (as the gateway charges). */
function costOf(u: { input_tokens: number; output_tokens: number; cache_creation_input_tokens?: number | null; cache_read_input_tokens?: number | null }): number {
  const pico = u.input_tokens * 3_000_000 + (u.cache_creation_input_tokens ?? 0) * 3_750_000 + (u.cache_read_input_tokens ?? 0) * 300_000 + u.output_tokens * 15_000_000;
  return Math.ceil(pico / 1_000_000);
}
const tokensOf = (u: { input_tokens: number; output_tokens: number; cache_creation_input_tokens?: number | null; cache_read_input_tokens?: number | null }) =>
  u.input_tokens + (u.cache_creation_input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0) + u.output_tokens;

const WEATHER_TOOL = { name: 'get_weather', description: 'Weather in a city', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] } };

/**
 * The Anthropic SDK (`@anthropic-ai/sdk`) unchanged but for its base URL and key, through the gateway to
 * an upstream that answers like Anthropic's Messages API (test/fixtures/anthropic-faithful-mock.ts):
 * the same keys, allow-lists, budgets (cache writes and reads at their prices) and audit as OpenAI
 * clients get, errors in Anthropic's shape.
 */
describe('Anthropic clients through the gateway (e2e)', () => {
  let upstream: AnthropicMock;
  let openaiUpstream: FaithfulMock;
  let gateway: RunningGateway;
  let dir: string;
  let client: Anthropic;

  beforeAll(async () => {
    upstream = await startAnthropicMock(UPSTREAM_KEY);
    openaiUpstream = await startFaithfulMock();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-anthropic-'));
    writeFileSync(path.join(dir, 'prices.json'), JSON.stringify({ [MODEL]: PRICE, 'gpt-4o-mini': { input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7 } }));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [
          { name: 'openai', base_url: openaiUpstream.url, api_key: OPENAI_UPSTREAM_KEY },
          { name: 'anthropic', type: 'anthropic', base_url: upstream.url, api_key: UPSTREAM_KEY },
        ],
        router: { default_backends: ['openai'], rules: [{ model: 'claude-*', backends: ['anthropic'] }] },
        virtual_keys: [
          { id: 'claude', token: KEY, budget: { total_tokens: 100_000_000, total_usd_micros: 100_000_000 } },
          { id: 'limited', token: LIMITED, budget: { total_tokens: 1000 } },
          { id: 'haiku-only', token: SONNET_ONLY, models: ['claude-haiku-*'] },
          { id: 'cached', token: CACHED, limits: { rpm: 2 }, cache: { ttl_secs: 60 } },
          { id: 'chat-only', token: CHAT_ONLY, allowed_routes: ['/v1/chat/completions'] },
          // Room for two of their requests' prompts as the upstream counts them, not for two whole answers.
          { id: 'edge', token: EDGE, budget: { total_tokens: 29 } },
          { id: 'edge-turns', token: EDGE_TURNS, budget: { total_tokens: 117 } },
        ],
      }),
    );
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), PRICING_FILE: path.join(dir, 'prices.json'), ADMIN_TOKEN, AUDIT_FLUSH_MS: '20' });
    client = new Anthropic({ apiKey: KEY, baseURL: gateway.url, maxRetries: 0 });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    await openaiUpstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
    upstream.answers.length = 0;
    openaiUpstream.requests.length = 0;
  });

  /** The proxy audit rows, oldest first. */
  async function rows(): Promise<Array<{ kind: string; keyId: string | null; payload: Record<string, any> }>> {
    await gateway.app.get(AuditService).flush();
    const items = (await gateway.app.get(AuditLogRepository).query({}, 1000, null)).items.filter((r) => r.kind.startsWith('proxy'));
    return [...items].reverse() as any;
  }
  const spent = async () => ({
    tokens: (await adminGet(gateway, '/admin/budgets/key:claude')).body.spent_tokens as number,
    usdMicros: (await adminGet(gateway, '/admin/costs/key:claude')).body.spent_usd_micros as number,
  });

  it('messages.create: the upstream gets the body byte for byte with its own key; usage and cache tokens are charged at their prices', async () => {
    const before = await spent();
    const system = [{ type: 'text' as const, text: 'You are a weather assistant. '.repeat(40), cache_control: { type: 'ephemeral' as const } }];
    const first = await client.messages.create({ model: MODEL, max_tokens: 256, system, messages: [{ role: 'user', content: 'Weather in Paris?' }] });
    expect(first.content).toEqual([{ type: 'text', text: ANTHROPIC_REPLY }]);
    expect(first.usage.cache_creation_input_tokens).toBe(CACHE_BLOCK_TOKENS);
    const second = await client.messages.create({ model: MODEL, max_tokens: 256, system, messages: [{ role: 'user', content: 'And tomorrow?' }] });
    expect(second.usage.cache_read_input_tokens).toBe(CACHE_BLOCK_TOKENS);

    // What reached Anthropic: the SDK's body as sent, the backend's key, the client's version; no virtual key.
    const [sent] = upstream.requests;
    expect(sent.url).toBe('/v1/messages');
    expect(sent.headers['x-api-key']).toBe(UPSTREAM_KEY);
    expect(sent.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(sent.headers.authorization).toBeUndefined();
    expect(JSON.stringify(sent.headers)).not.toContain(KEY);
    expect(JSON.parse(sent.raw)).toEqual({ model: MODEL, max_tokens: 256, system, messages: [{ role: 'user', content: 'Weather in Paris?' }] });

    const after = await spent();
    expect(after.tokens - before.tokens).toBe(tokensOf(first.usage) + tokensOf(second.usage));
    expect(after.usdMicros - before.usdMicros).toBe(costOf(first.usage) + costOf(second.usage));
    const audited = (await rows()).filter((r) => r.payload.path === '/v1/messages').slice(-2);
    expect(audited.map((r) => r.payload.protocol)).toEqual(['anthropic', 'anthropic']);
    expect(audited[0].payload).toMatchObject({ model: MODEL, backend: 'anthropic', status: 200, usage: { cached_tokens: 0, cache_write_tokens: CACHE_BLOCK_TOKENS } });
    expect(audited[1].payload.charged).toMatchObject({ tokens: tokensOf(second.usage), usd_micros: costOf(second.usage), basis: 'usage' });
  });

  it('messages.stream: the SSE stream arrives byte for byte, and its usage (message_start + message_delta) is charged', async () => {
    const before = await spent();
    const stream = client.messages.stream({ model: MODEL, max_tokens: 128, messages: [{ role: 'user', content: 'Stream it' }] });
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const final = await stream.finalMessage();
    expect(texts.join('')).toBe(ANTHROPIC_REPLY);
    expect(final.stop_reason).toBe('end_turn');
    const after = await spent();
    expect(after.tokens - before.tokens).toBe(tokensOf(final.usage));
    expect(after.usdMicros - before.usdMicros).toBe(costOf(final.usage));

    // Raw: what the client reads is exactly what the upstream sent.
    const response = await fetch(`${gateway.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'anthropic-beta': 'prompt-caching-2024-07-31', 'content-type': 'text/plain' },
      body: '{ "model" : "claude-sonnet-4-5", "stream": true, "max_tokens": 1.0e2, "messages": [{"role":"user","content":"x"}] }',
    });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    expect(await response.text()).toBe(upstream.answers.at(-1));
    expect(upstream.requests.at(-1)!.raw).toBe('{ "model" : "claude-sonnet-4-5", "stream": true, "max_tokens": 1.0e2, "messages": [{"role":"user","content":"x"}] }');
    // The client's API version and betas pass through; its key does not.
    expect(upstream.requests.at(-1)!.headers).toMatchObject({ 'anthropic-version': '2023-06-01', 'anthropic-beta': 'prompt-caching-2024-07-31', 'x-api-key': UPSTREAM_KEY, 'content-type': 'application/json' });
    const audited = (await rows()).at(-1)!;
    expect(audited.payload).toMatchObject({ protocol: 'anthropic', stream: true, status: 200, charged: { basis: 'usage' } });
  });

  it('tools: a tool_use answer, then the tool_result round trip, JSON and streamed', async () => {
    const ask = { model: MODEL, max_tokens: 256, tools: [WEATHER_TOOL], messages: [{ role: 'user' as const, content: 'Weather in Paris?' }] };
    const call = await client.messages.create(ask);
    expect(call.stop_reason).toBe('tool_use');
    const use = call.content.find((b) => b.type === 'tool_use')!;
    expect(use).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } });
    const answer = await client.messages.create({
      ...ask,
      messages: [...ask.messages, { role: 'assistant', content: call.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21°C, sunny' }] }],
    });
    expect(answer.content[0]).toMatchObject({ type: 'text', text: ANTHROPIC_REPLY });
    const streamed = await client.messages.stream(ask).finalMessage();
    expect(streamed.content[0]).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } });
  });

  it('count_tokens answers and is neither reserved nor charged', async () => {
    const before = await spent();
    const counted = await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'How many?' }] });
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect(upstream.requests.at(-1)!.url).toBe('/v1/messages/count_tokens');
    expect(await spent()).toEqual(before);
    expect((await rows()).at(-1)!.payload).toMatchObject({ protocol: 'anthropic', path: '/v1/messages/count_tokens', status: 200, charged: null });
  });

  it("a path the front door refuses before any route (dot segments, an encoded backslash) is answered in Anthropic's error shape", async () => {
    for (const target of ['/v1/messages/../messages', '/v1/messages/count_tokens/%2e%2e', '/v1/messages%5ccount_tokens']) {
      const answer = await rawHttp(gateway.url, 'POST', target, { 'x-api-key': KEY, 'content-type': 'application/json' }, '{}');
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body)).toEqual({
        type: 'error',
        error: { type: 'invalid_request_error', message: expect.any(String) },
        request_id: answer.headers['x-request-id'],
      });
    }
  });

  it("strict mode lowers max_tokens to what the key's budget has left", async () => {
    // allowed_routes govern Anthropic's routes by their full path, before the body is read.
    const chatOnly = new Anthropic({ apiKey: CHAT_ONLY, baseURL: gateway.url, maxRetries: 0 });
    await expect(chatOnly.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 403,
      error: { type: 'error', error: { type: 'permission_error', message: expect.stringContaining('/v1/messages') } },
    });
    const limited = new Anthropic({ apiKey: LIMITED, baseURL: gateway.url, maxRetries: 0 });
    await limited.messages.create({ model: MODEL, max_tokens: 4096, messages: [{ role: 'user', content: 'hi' }] });
    const capped = JSON.parse(upstream.requests.at(-1)!.raw).max_tokens;
    expect(capped).toBeGreaterThan(0);
    expect(capped).toBeLessThan(1000);
  });

  // The upstream counts the prompt its own way (here the messages' JSON / 4), more than bytes/4 of their
  // text: strict mode must still never let the last requests at the edge take the scope over.
  it.each([
    ['one short message', EDGE, { messages: [{ role: 'user' as const, content: 'stream 12' }] }],
    ['a system prompt and many short turns', EDGE_TURNS, { system: 'Be brief.', messages: ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((t, i) => ({ role: i % 2 ? ('assistant' as const) : ('user' as const), content: t })) }],
  ])("strict mode holds the limit when the provider counts more prompt tokens than bytes/4 (%s)", async (_, token, prompt) => {
    const edge = new Anthropic({ apiKey: token, baseURL: gateway.url, maxRetries: 0 });
    const id = token === EDGE ? 'edge' : 'edge-turns';
    const limit = (await adminGet(gateway, `/admin/budgets/key:${id}`)).body.limit_tokens as number;
    let served = 0;
    let seen = 0;
    for (let i = 0; i < 10; i++) {
      const answer = await edge.messages.create({ model: MODEL, max_tokens: 40, ...prompt }).catch((e: unknown) => e);
      if (answer instanceof Anthropic.APIError) {
        expect(answer).toMatchObject({ status: 402, error: { type: 'error', error: { type: 'billing_error' } } });
        break;
      }
      served++;
      seen += tokensOf((answer as Anthropic.Message).usage);
    }
    expect(served).toBeGreaterThan(0);
    const scope = (await adminGet(gateway, `/admin/budgets/key:${id}`)).body;
    expect(scope).toMatchObject({ spent_tokens: seen, reserved_tokens: 0 });
    expect(scope.spent_tokens).toBeLessThanOrEqual(limit);
  });

  it("the response cache and the rate limit apply; a 429 comes in Anthropic's shape with retry-after", async () => {
    const ask = () =>
      fetch(`${gateway.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': CACHED, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'cache me' }] }),
      }).then(async (r) => ({ status: r.status, cache: r.headers.get('x-ditto-cache'), retryAfter: r.headers.get('retry-after'), body: (await r.json()) as any }));
    const first = await ask();
    const second = await ask();
    expect([first.status, first.cache, second.status, second.cache]).toEqual([200, 'miss', 200, 'hit']);
    expect(second.body).toEqual(first.body);
    expect(upstream.requests).toHaveLength(1);
    const third = await ask();
    expect(third).toMatchObject({ status: 429, retryAfter: expect.stringMatching(/^\d+$/), body: { type: 'error', error: { type: 'rate_limit_error' } } });
  });

  it("refusals come in Anthropic's error shape, before and after the body is read", async () => {
    const wrong = new Anthropic({ apiKey: 'sk-ditto-wrong-0123456789abcdef', baseURL: gateway.url, maxRetries: 0 });
    await expect(wrong.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 401,
      error: { type: 'error', error: { type: 'authentication_error' } },
    });
    const haiku = new Anthropic({ apiKey: SONNET_ONLY, baseURL: gateway.url, maxRetries: 0 });
    await expect(haiku.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(Anthropic.PermissionDeniedError);
    // allowed_routes govern Anthropic's routes by their full path, before the body is read.
    const chatOnly = new Anthropic({ apiKey: CHAT_ONLY, baseURL: gateway.url, maxRetries: 0 });
    await expect(chatOnly.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 403,
      error: { type: 'error', error: { type: 'permission_error', message: expect.stringContaining('/v1/messages') } },
    });
    const limited = new Anthropic({ apiKey: LIMITED, baseURL: gateway.url, maxRetries: 0 });
    await expect(limited.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'x'.repeat(20_000) }] })).rejects.toMatchObject({
      status: 402,
      error: { type: 'error', error: { type: 'billing_error' } },
    });
    // A body the gateway cannot govern: no max_tokens.
    const raw = await fetch(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': KEY, 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages: [] }) });
    expect(raw.status).toBe(400);
    const body: unknown = await raw.json();
    expect(body).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('max_tokens') }, request_id: raw.headers.get('x-request-id') });
    expect(JSON.stringify(body)).not.toMatch(/at .*\.ts:\d+/);
    // Another route of Anthropic's API the gateway does not serve: 404 in the same shape, nothing sent upstream.
    const batches = await fetch(`${gateway.url}/v1/messages/batches`, { method: 'POST', headers: { 'x-api-key': KEY, 'content-type': 'application/json' }, body: '{}' });
    expect(batches.status).toBe(404);
    expect(((await batches.json()) as { error: { type: string } }).error.type).toBe('not_found_error');
    expect(upstream.requests.filter((r) => r.url.includes('batches'))).toEqual([]);
  });

  describe('the openai SDK calling a claude model (translated to the Messages API and back)', () => {
    let openai: OpenAI;
    beforeAll(() => {
      openai = new OpenAI({ apiKey: KEY, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    });
    const OPENAI_TOOL = { type: 'function' as const, function: { name: 'get_weather', description: 'Weather in a city', parameters: WEATHER_TOOL.input_schema } };

    it('JSON: a chat completion with system and multi-turn messages, usage charged as Anthropic reported it', async () => {
      const before = await spent();
      const completion = await openai.chat.completions.create({
        model: MODEL,
        max_tokens: 64,
        stop: ['END'],
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello!' },
          { role: 'user', content: [{ type: 'text', text: 'Weather?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] },
        ],
      });
      expect(completion.object).toBe('chat.completion');
      expect(completion.choices[0]).toMatchObject({ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: ANTHROPIC_REPLY } });
      const sent = upstream.requests.at(-1)!;
      expect(sent.url).toBe('/v1/messages');
      expect(sent.headers['x-api-key']).toBe(UPSTREAM_KEY);
      expect(sent.json).toEqual({
        model: MODEL,
        max_tokens: 64,
        system: 'Be brief.',
        stop_sequences: ['END'],
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
          { role: 'assistant', content: [{ type: 'text', text: 'Hello!' }] },
          { role: 'user', content: [{ type: 'text', text: 'Weather?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }] },
        ],
      });
      const answered = JSON.parse(upstream.answers.at(-1)!).usage;
      expect(completion.usage).toMatchObject({ prompt_tokens: tokensOf(answered) - answered.output_tokens, completion_tokens: answered.output_tokens });
      expect((await spent()).tokens - before.tokens).toBe(tokensOf(answered));
      const row = (await rows()).at(-1)!;
      expect(row.payload).toMatchObject({ protocol: 'openai', path: '/v1/chat/completions', backend: 'anthropic', status: 200, charged: { basis: 'usage', tokens: tokensOf(answered) } });
    });

    it('stream: chunks the SDK parses, the usage chunk when asked, charged', async () => {
      const before = await spent();
      const stream = await openai.chat.completions.create({ model: MODEL, max_tokens: 64, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Stream' }] });
      let text = '';
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
        usage = chunk.usage ?? usage;
      }
      expect(text).toBe(ANTHROPIC_REPLY);
      expect(finish).toBe('stop');
      expect(usage!.total_tokens).toBe((await spent()).tokens - before.tokens);
      expect(upstream.requests.at(-1)!.json.stream).toBe(true);
    });

    it('tools: a tool call, its result sent back, JSON and streamed', async () => {
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }];
      const first = await openai.chat.completions.create({ model: MODEL, max_tokens: 128, tools: [OPENAI_TOOL], tool_choice: 'required', parallel_tool_calls: false, messages });
      expect(first.choices[0].finish_reason).toBe('tool_calls');
      const call = first.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(call).toMatchObject({ type: 'function', function: { name: 'get_weather' } });
      expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' });
      expect(upstream.requests.at(-1)!.json).toMatchObject({ tools: [{ name: 'get_weather', input_schema: WEATHER_TOOL.input_schema }], tool_choice: { type: 'any', disable_parallel_tool_use: true } });

      const second = await openai.chat.completions.create({
        model: MODEL,
        max_tokens: 128,
        tools: [OPENAI_TOOL],
        messages: [...messages, first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '21°C, sunny' }],
      });
      expect(second.choices[0].message.content).toBe(ANTHROPIC_REPLY);
      expect(upstream.requests.at(-1)!.json.messages.slice(1)).toEqual([
        { role: 'assistant', content: [{ type: 'tool_use', id: call.id, name: 'get_weather', input: { city: 'Paris' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: '21°C, sunny' }] },
      ]);

      const streamed = openai.chat.completions.stream({ model: MODEL, max_tokens: 128, tools: [OPENAI_TOOL], messages });
      const final = await streamed.finalChatCompletion();
      expect(final.choices[0].finish_reason).toBe('tool_calls');
      const streamedCall = final.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(JSON.parse(streamedCall.function.arguments)).toEqual({ city: 'Paris' });
    });

    it('fields the Messages API cannot take are refused with a 400 naming them; errors come in OpenAI shape', async () => {
      await expect(openai.chat.completions.create({ model: MODEL, n: 2, logprobs: true, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
        status: 400,
        message: expect.stringMatching(/logprobs, n \(other than 1\)/),
      });
      const wrong = new OpenAI({ apiKey: 'sk-ditto-wrong-0123456789abcdef', baseURL: `${gateway.url}/v1`, maxRetries: 0 });
      await expect(wrong.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
      expect(upstream.requests).toEqual([]);
    });
  });

  describe('the Anthropic SDK calling a model routed to an openai backend (translated to chat completions and back)', () => {
    const GPT = 'gpt-4o-mini';

    it('JSON: a message with system and multi-turn content, usage charged as OpenAI reported it', async () => {
      const before = await spent();
      const reply = await client.messages.create({
        model: GPT,
        max_tokens: 100,
        system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
        stop_sequences: ['END'],
        messages: [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello!' },
          { role: 'user', content: [{ type: 'text', text: 'Weather?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }] },
        ],
      });
      expect(reply).toMatchObject({ type: 'message', role: 'assistant', stop_reason: 'end_turn', content: [{ type: 'text', text: REPLY }] });
      const sent = openaiUpstream.requests.at(-1)!;
      expect(sent.path).toBe('/v1/chat/completions');
      expect(sent.headers.authorization).toBe(`Bearer ${OPENAI_UPSTREAM_KEY}`);
      expect(sent.headers['x-api-key']).toBeUndefined();
      expect(sent.json).toEqual({
        model: GPT,
        max_tokens: 100,
        stop: ['END'],
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello!' },
          { role: 'user', content: [{ type: 'text', text: 'Weather?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] },
        ],
      });
      expect((await spent()).tokens - before.tokens).toBe(reply.usage.input_tokens + reply.usage.output_tokens);
      expect((await rows()).at(-1)!.payload).toMatchObject({ protocol: 'anthropic', path: '/v1/messages', backend: 'openai', status: 200, charged: { basis: 'usage' } });
    });

    it('stream: the event stream the SDK accumulates, with the usage of the include_usage chunk', async () => {
      const before = await spent();
      const stream = client.messages.stream({ model: GPT, max_tokens: 100, messages: [{ role: 'user', content: 'Stream' }] });
      const texts: string[] = [];
      stream.on('text', (t) => texts.push(t));
      const final = await stream.finalMessage();
      expect(texts.join('')).toBe(REPLY);
      expect(final.stop_reason).toBe('end_turn');
      expect(openaiUpstream.requests.at(-1)!.json).toMatchObject({ stream: true, stream_options: { include_usage: true } });
      expect(final.usage.output_tokens).toBeGreaterThan(0);
      expect((await spent()).tokens - before.tokens).toBe(final.usage.input_tokens + final.usage.output_tokens);
    });

    it('tools: tool_use from tool calls, the tool_result round trip, JSON and streamed', async () => {
      const ask = { model: GPT, max_tokens: 128, tools: [WEATHER_TOOL], tool_choice: { type: 'any' as const }, messages: [{ role: 'user' as const, content: 'Weather in Paris?' }] };
      const call = await client.messages.create(ask);
      expect(call.stop_reason).toBe('tool_use');
      const use = call.content.find((b) => b.type === 'tool_use')!;
      expect(use).toMatchObject({ name: 'get_weather', input: { city: 'Paris' } });
      expect(openaiUpstream.requests.at(-1)!.json).toMatchObject({ tool_choice: 'required', tools: [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER_TOOL.input_schema } }] });
      const answer = await client.messages.create({
        ...ask,
        tool_choice: { type: 'auto' },
        messages: [...ask.messages, { role: 'assistant', content: call.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21°C, sunny' }] }],
      });
      expect(answer.content).toEqual([{ type: 'text', text: REPLY }]);
      expect(openaiUpstream.requests.at(-1)!.json.messages.slice(1)).toEqual([
        { role: 'assistant', content: null, tool_calls: [{ id: use.id, type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: use.id, content: '21°C, sunny' },
      ]);
      const streamed = await client.messages.stream(ask).finalMessage();
      expect(streamed.stop_reason).toBe('tool_use');
      expect(streamed.content).toEqual([expect.objectContaining({ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } })]);
    });

    it('fields chat completions cannot take are refused with a 400 naming them', async () => {
      const withTopK = { model: GPT, max_tokens: 8, top_k: 5, messages: [{ role: 'user' as const, content: 'hi' }] };
      await expect(client.messages.create(withTopK)).rejects.toMatchObject({
        status: 400,
        error: { type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('top_k') } },
      });
      expect(openaiUpstream.requests).toEqual([]);
    });
  });
});
