import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { FaithfulMock, IMAGE_B64_BYTES, startFaithfulMock } from '../fixtures/openai-faithful-mock';
import { BackendEnv, backendEnv } from './backends';
import { ADMIN_TOKEN, RunningGateway, admin, adminGet, startGateway, within } from './harness';

/**
 * Prices chosen so every charge is whole USD micros: token prices in USD per million tokens are micros
 * per token; whisper-1 100 micros a second, tts-1 15 micros a character, dall-e-2 20,000 micros an image.
 */
const PRICING = {
  'gpt-4o-mini': { input_per_mtok_usd: 2, output_per_mtok_usd: 8 },
  'text-embedding-3-small': { input_per_mtok_usd: 1, output_per_mtok_usd: 1 },
  'gpt-4o-transcribe': { input_per_mtok_usd: 6, output_per_mtok_usd: 10 },
  'gpt-image-1': { input_per_mtok_usd: 5, output_per_mtok_usd: 40 },
  'whisper-1': { input_cost_per_second: 0.0001 },
  'tts-1': { input_cost_per_character: 0.000015 },
  'dall-e-2': { output_cost_per_image: 0.02 },
};
/** Micros per token in and out, from PRICING. */
const TOKEN_PRICE: Record<string, [number, number]> = { 'gpt-4o-mini': [2, 8], 'text-embedding-3-small': [1, 1], 'gpt-4o-transcribe': [6, 10], 'gpt-image-1': [5, 40] };
/** 12.5 s of 16-bit mono audio at 16 kHz, as the mock counts it (32,000 bytes a second). */
const AUDIO_BYTES = 400_000;

interface Spent {
  tokens: number;
  usd: number;
}

const tokenCost = (model: string, usage: { prompt: number; completion: number }) => usage.prompt * TOKEN_PRICE[model][0] + usage.completion * TOKEN_PRICE[model][1];

/**
 * What each endpoint family is charged (issue: "the charge equals what the upstream reported, in
 * tokens and USD"), against an upstream that answers like OpenAI's API, through the official SDK:
 * tokens where the response reports tokens, seconds, characters or images where the model is billed
 * in them (token budgets untouched), nothing for endpoints that bill nothing.
 */
describe('metering: every endpoint family charged what the upstream reported (e2e, sqlite)', () => {
  let upstream: FaithfulMock;
  let store: BackendEnv;
  let gateway: RunningGateway;
  let dir: string;
  let keys = 0;

  beforeAll(async () => {
    upstream = await startFaithfulMock();
    store = await backendEnv('sqlite');
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-metering-'));
    writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ backends: [{ name: 'openai', base_url: upstream.url, api_key: 'sk-upstream-metering' }], pricing: PRICING }));
    gateway = await startGateway({ ...store.env, GATEWAY_CONFIG: path.join(dir, 'gateway.json'), ADMIN_TOKEN, UPLOAD_LIMIT_BYTES: String(64 * 1024 * 1024) });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    await store?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
  });

  /** A client on a fresh key with the given budget (both ledgers limited by default) and allowed routes (default all). */
  async function client(budget: Record<string, number> = { total_tokens: 10_000_000, total_usd_micros: 1_000_000_000 }, routes: string[] = []): Promise<{ sdk: OpenAI; scope: string }> {
    const id = `m${++keys}`;
    const created = await admin(gateway, 'POST', '/admin/keys', { id, budget, allowed_routes: routes });
    expect(created.status).toBe(201);
    return { sdk: new OpenAI({ apiKey: created.body.token as string, baseURL: `${gateway.url}/v1`, maxRetries: 0 }), scope: `key:${id}` };
  }

  /** Spend of a scope on both ledgers once nothing is reserved. */
  async function spent(scope: string): Promise<Spent> {
    const read = async () => {
      const [tokens, costs] = await Promise.all([adminGet(gateway, `/admin/budgets/${encodeURIComponent(scope)}`), adminGet(gateway, `/admin/costs/${encodeURIComponent(scope)}`)]);
      return { tokens: tokens.body, costs: costs.body };
    };
    await within(5000, async () => {
      const { tokens, costs } = await read();
      return tokens.reserved_tokens === 0 && costs.reserved_usd_micros === 0;
    });
    const { tokens, costs } = await read();
    return { tokens: tokens.spent_tokens, usd: costs.spent_usd_micros };
  }

  it('chat completions with n choices: every choice\'s tokens, at the model\'s prices', async () => {
    const { sdk, scope } = await client();
    const completion = await sdk.chat.completions.create({ model: 'gpt-4o-mini', n: 3, max_tokens: 50, messages: [{ role: 'user', content: 'Weather in Paris?' }] });
    expect(completion.choices).toHaveLength(3);
    const usage = completion.usage!;
    expect(await spent(scope)).toEqual({ tokens: usage.total_tokens, usd: tokenCost('gpt-4o-mini', { prompt: usage.prompt_tokens, completion: usage.completion_tokens }) });
  });

  it('responses and embeddings: their reported tokens', async () => {
    const { sdk, scope } = await client();
    const response = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'Weather in Paris?', max_output_tokens: 100 });
    const embedded = await sdk.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two words'] });
    const r = response.usage!;
    const e = embedded.usage;
    expect(await spent(scope)).toEqual({
      tokens: r.total_tokens + e.total_tokens,
      usd: tokenCost('gpt-4o-mini', { prompt: r.input_tokens, completion: r.output_tokens }) + tokenCost('text-embedding-3-small', { prompt: e.prompt_tokens, completion: 0 }),
    });
  });

  it('a background response: held under its id, charged its usage once when seen completed, on any replica', async () => {
    const other = await startGateway({ ...store.env, GATEWAY_CONFIG: path.join(dir, 'gateway.json'), ADMIN_TOKEN });
    try {
      const { sdk, scope } = await client();
      const queued = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'Write a long essay.', max_output_tokens: 500, background: true });
      expect(queued.status).toBe('queued');
      // Nothing charged, the worst case held under the response's id (moved there once the answer is sent).
      const ledger = async () => (await adminGet(gateway, `/admin/budgets/${encodeURIComponent(scope)}`)).body;
      await within(3000, async () => (await ledger()).reserved_tokens >= 500);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await ledger()).toMatchObject({ spent_tokens: 0, reserved_tokens: expect.any(Number) });
      expect((await ledger()).reserved_tokens).toBeGreaterThanOrEqual(500);
      // Read back through the other replica (once the key has reached it): completed with usage, charged that, the hold released.
      await within(3000, async () => (await fetch(`${other.url}/v1/models`, { headers: { authorization: `Bearer ${sdk.apiKey}` } })).status !== 401);
      const readBack = new OpenAI({ apiKey: sdk.apiKey, baseURL: `${other.url}/v1`, maxRetries: 0 });
      const done = await readBack.responses.retrieve(queued.id);
      expect(done.status).toBe('completed');
      const usage = done.usage!;
      const charged = { tokens: usage.total_tokens, usd: tokenCost('gpt-4o-mini', { prompt: usage.input_tokens, completion: usage.output_tokens }) };
      expect(await spent(scope)).toEqual(charged);
      // Exactly once: reading it again, on either replica, charges nothing more.
      await sdk.responses.retrieve(queued.id);
      await readBack.responses.retrieve(queued.id);
      expect(await spent(scope)).toEqual(charged);

      // Seen completed in its stream (GET …?stream=true): charged the same way.
      const streamed = await client();
      const second = await streamed.sdk.responses.create({ model: 'gpt-4o-mini', input: 'Another essay.', max_output_tokens: 500, background: true });
      await within(3000, async () => (await fetch(`${other.url}/v1/models`, { headers: { authorization: `Bearer ${streamed.sdk.apiKey}` } })).status !== 401);
      const events = await fetch(`${other.url}/v1/responses/${second.id}?stream=true`, { headers: { authorization: `Bearer ${streamed.sdk.apiKey}` } });
      const text = await events.text();
      const completed = JSON.parse(text.split('\n').filter((l) => l.startsWith('data:')).at(-1)!.slice(5)).response;
      expect(completed.status).toBe('completed');
      expect(await spent(streamed.scope)).toEqual({ tokens: completed.usage.total_tokens, usd: tokenCost('gpt-4o-mini', { prompt: completed.usage.input_tokens, completion: completed.usage.output_tokens }) });
    } finally {
      await other.close();
    }
  });

  it('a background response on a scope without room to hold it twice is charged its reservation at once, and only once', async () => {
    const { sdk, scope } = await client({ total_tokens: 700 });
    const queued = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'Write a long essay.', max_output_tokens: 500, background: true });
    await within(3000, async () => (await adminGet(gateway, `/admin/budgets/${encodeURIComponent(scope)}`)).body.spent_tokens > 0);
    const charged = await spent(scope);
    expect(charged.tokens).toBeGreaterThanOrEqual(500);
    expect(charged.tokens).toBeLessThanOrEqual(700);
    await sdk.responses.retrieve(queued.id);
    expect(await spent(scope)).toEqual(charged);
  });

  it('a background response nobody reads back is charged its reservation when it is reaped (the provider did the work), and only once', async () => {
    const { sdk, scope } = await client();
    const queued = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'Write a long essay.', max_output_tokens: 500, background: true });
    const ledger = async () => (await adminGet(gateway, `/admin/budgets/${encodeURIComponent(scope)}`)).body;
    await within(3000, async () => (await ledger()).reserved_tokens >= 500);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const held = (await ledger()).reserved_tokens as number;
    const heldUsd = (await adminGet(gateway, `/admin/costs/${encodeURIComponent(scope)}`)).body.reserved_usd_micros as number;
    expect(heldUsd).toBeGreaterThan(0);
    // Past RESERVATION_TTL_SECS (here: reaped at once): charged the worst case held, not released.
    expect((await admin(gateway, 'POST', '/admin/reservations/reap', { older_than_secs: 0 })).status).toBe(200);
    expect(await spent(scope)).toEqual({ tokens: held, usd: heldUsd });
    // Read back later: settled already, nothing more is charged.
    expect((await sdk.responses.retrieve(queued.id)).status).toBe('completed');
    expect(await spent(scope)).toEqual({ tokens: held, usd: heldUsd });
    // The charge is in the audit trail, with the key and the amounts.
    await within(5000, async () => (await adminGet(gateway, '/admin/audit?kind=proxy.background_expired')).body.items.length > 0);
    const [row] = (await adminGet(gateway, `/admin/audit?kind=proxy.background_expired&key_id=${scope.slice('key:'.length)}`)).body.items;
    expect(row.payload).toMatchObject({ response_id: queued.id, charged: { tokens: held, usd_micros: heldUsd, basis: 'expired' } });
  });

  it('whisper-1 in seconds, whatever the response format; token budgets untouched', async () => {
    const audio = () => toFile(Buffer.alloc(AUDIO_BYTES, 1), 'speech.wav', { type: 'audio/wav' });
    // json: `usage: {type: "duration", seconds: 13}` (whole seconds, as OpenAI reports them).
    const json = await client();
    await json.sdk.audio.transcriptions.create({ model: 'whisper-1', file: await audio() });
    expect(await spent(json.scope)).toEqual({ tokens: 0, usd: 13 * 100 });
    // verbose_json: `duration: 12.5`, no usage; srt and vtt: the last cue ends at 12.5 s.
    for (const format of ['verbose_json', 'srt', 'vtt'] as const) {
      const { sdk, scope } = await client();
      await sdk.audio.transcriptions.create({ model: 'whisper-1', file: await audio(), response_format: format });
      expect([format, await spent(scope)]).toEqual([format, { tokens: 0, usd: 1250 }]);
    }
    // text carries no length: charged the reservation, the longest audio the upload can hold
    // (upload bytes / 2,000 per second, docs/budgets.md).
    const text = await client();
    upstream.requests.length = 0;
    await text.sdk.audio.transcriptions.create({ model: 'whisper-1', file: await audio(), response_format: 'text' });
    expect(await spent(text.scope)).toEqual({ tokens: 0, usd: Math.ceil(upstream.requests[0].bytes / 2000) * 100 });
  });

  it('gpt-4o-transcribe in tokens, from its usage', async () => {
    const { sdk, scope } = await client();
    const result = (await sdk.audio.transcriptions.create({ model: 'gpt-4o-transcribe', file: await toFile(Buffer.alloc(AUDIO_BYTES, 2), 'a.wav', { type: 'audio/wav' }) })) as OpenAI.Audio.Transcription;
    const usage = result.usage as { input_tokens: number; output_tokens: number; total_tokens: number };
    expect(await spent(scope)).toEqual({ tokens: usage.total_tokens, usd: tokenCost('gpt-4o-transcribe', { prompt: usage.input_tokens, completion: usage.output_tokens }) });
  });

  it('speech in characters of its input (the audio carries no usage)', async () => {
    const { sdk, scope } = await client();
    const input = 'Bonjour, café ☕ — the weather is sunny.';
    const audio = await sdk.audio.speech.create({ model: 'tts-1', voice: 'alloy', input });
    await audio.arrayBuffer();
    expect(await spent(scope)).toEqual({ tokens: 0, usd: [...input].length * 15 });
  });

  it('images: dall-e per image returned, gpt-image-1 in tokens, found after megabytes of image data', async () => {
    const dalle = await client();
    const drawn = await dalle.sdk.images.generate({ model: 'dall-e-2', prompt: 'a lighthouse', n: 2, response_format: 'b64_json' });
    expect(drawn.data).toHaveLength(2);
    expect(await spent(dalle.scope)).toEqual({ tokens: 0, usd: 2 * 20_000 });

    const image = await client();
    const generated = await image.sdk.images.generate({ model: 'gpt-image-1', prompt: 'a lighthouse at dusk', n: 2 });
    expect(generated.data![0].b64_json!.length).toBe(IMAGE_B64_BYTES); // the usage comes after > 10 MB
    const usage = generated.usage!;
    expect(await spent(image.scope)).toEqual({ tokens: usage.total_tokens, usd: tokenCost('gpt-image-1', { prompt: usage.input_tokens, completion: usage.output_tokens }) });
  });

  it('files, batches and moderations bill nothing: a key with one token and one micro left uses them', async () => {
    // Batches only for a budgeted key whose routes name them (their usage cannot be reserved up front).
    const { sdk, scope } = await client({ total_tokens: 1, total_usd_micros: 1 }, ['/v1/**']);
    const file = await sdk.files.create({ file: await toFile(Buffer.from('{}\n'), 'in.jsonl'), purpose: 'batch' });
    expect(file.id).toBe('file-faithful');
    const batch = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.id).toBe('batch_faithful');
    const moderation = await sdk.moderations.create({ model: 'omni-moderation-latest', input: 'hello' });
    expect(moderation.results).toHaveLength(1);
    expect(upstream.requests.map((r) => r.path)).toEqual(['/v1/files', '/v1/batches', '/v1/moderations']);
    const ledger = await adminGet(gateway, `/admin/budgets/${encodeURIComponent(scope)}`);
    expect(ledger.body).toMatchObject({ spent_tokens: 0, reserved_tokens: 0 });
    expect((await adminGet(gateway, `/admin/costs/${encodeURIComponent(scope)}`)).body).toMatchObject({ spent_usd_micros: 0, reserved_usd_micros: 0 });
  });
});
