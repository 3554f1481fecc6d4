import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { embed, experimental_generateSpeech as generateSpeech, experimental_transcribe as transcribe, generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';
import OpenAI, { APIConnectionError, APIError, toFile } from 'openai';
import { AuditService } from '../../src/audit/audit.service';
import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { FaithfulMock, REPLY, speechBytes, startFaithfulMock } from '../fixtures/openai-faithful-mock';
import { RunningGateway, startGateway } from './harness';

const KEY = 'sk-ditto-clients-0123456789abcdefghijklm';
/** Above OpenAI's 25 MB audio limit, and the gateway's old 10 MiB body limit. */
const BIG_AUDIO_BYTES = 26 * 1024 * 1024;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

const WEATHER_TOOL = {
  type: 'function' as const,
  function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
};

/** The floats the mock answers for input `index` (base64 or not, clients must decode to these). */
const expectedEmbedding = (index: number, dimensions = 8) => Array.from(Float32Array.from({ length: dimensions }, (_v, i) => (index + 1) * 0.125 + i * 0.0625));

/**
 * The client libraries people point at the gateway, unchanged but for the base URL and key: the
 * official `openai` SDK, the Vercel AI SDK (`ai` + `@ai-sdk/openai`) and LangChain (`@langchain/openai`),
 * through every kind of endpoint (JSON, SSE, tools, embeddings, multipart uploads, binary downloads)
 * against an upstream that answers like OpenAI (test/fixtures/openai-faithful-mock.ts).
 */
describe('OpenAI client libraries through the gateway (e2e)', () => {
  let upstream: FaithfulMock;
  let gateway: RunningGateway;
  let small: RunningGateway;
  let dir: string;
  const baseURL = () => `${gateway.url}/v1`;

  beforeAll(async () => {
    upstream = await startFaithfulMock();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-clients-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [{ name: 'openai', base_url: upstream.url, api_key: 'sk-upstream-clients-secret' }],
        router: { default_backends: ['openai'] },
        virtual_keys: [{ id: 'clients', token: KEY, budget: { total_tokens: 100_000_000 } }],
      }),
    );
    const env = { STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), AUDIT_FLUSH_MS: '20' };
    gateway = await startGateway(env);
    small = await startGateway({ ...env, UPLOAD_LIMIT_BYTES: String(1024 * 1024) });
  });

  afterAll(async () => {
    await gateway?.close();
    await small?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
  });

  async function usageOf(requestPath: string): Promise<unknown> {
    await gateway.app.get(AuditService).flush();
    const rows = (await gateway.app.get(AuditLogRepository).query({}, 1000, null)).items;
    return rows.filter((r) => r.kind === 'proxy' && r.payload.path === requestPath).at(-1)?.payload.usage;
  }

  describe('openai (official SDK)', () => {
    let client: OpenAI;
    beforeAll(() => {
      client = new OpenAI({ apiKey: KEY, baseURL: baseURL(), maxRetries: 0 });
    });

    it('chat completions: JSON, stream with usage, and tool calls (JSON and streamed)', async () => {
      const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather?' }] });
      expect(completion.choices[0].message.content).toBe(REPLY);
      expect(completion.usage?.completion_tokens).toBeGreaterThan(0);

      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather?' }], stream: true, stream_options: { include_usage: true } });
      let text = '';
      let usage: OpenAI.CompletionUsage | null | undefined = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        usage = chunk.usage ?? usage;
      }
      expect(text).toBe(REPLY);
      expect(usage?.total_tokens).toBeGreaterThan(0);

      const withTools = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [WEATHER_TOOL] });
      const call = withTools.choices[0].message.tool_calls?.[0];
      expect(withTools.choices[0].finish_reason).toBe('tool_calls');
      expect(call?.type === 'function' && [call.function.name, JSON.parse(call.function.arguments)]).toEqual(['get_weather', { city: 'Paris' }]);

      const runner = client.chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [WEATHER_TOOL] });
      const streamed = await runner.finalChatCompletion();
      expect(streamed.choices[0].message.tool_calls?.[0]).toMatchObject({ id: 'call_abc123', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } });
    });

    it('responses: JSON, and the event stream to response.completed with usage', async () => {
      const response = await client.responses.create({ model: 'gpt-4o-mini', input: 'Weather?' });
      expect(response.output_text).toBe(REPLY);
      expect(response.usage?.output_tokens).toBeGreaterThan(0);

      const events: string[] = [];
      let text = '';
      const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'Weather?', stream: true });
      let completed: OpenAI.Responses.Response | null = null;
      for await (const event of stream) {
        events.push(event.type);
        if (event.type === 'response.output_text.delta') text += event.delta;
        if (event.type === 'response.completed') completed = event.response;
      }
      expect(text).toBe(REPLY);
      expect(events[0]).toBe('response.created');
      expect(events.at(-1)).toBe('response.completed');
      expect(completed!.usage?.total_tokens).toBeGreaterThan(0);
      // The gateway read the usage from the stream's last event.
      expect(await usageOf('/v1/responses')).toMatchObject({ total_tokens: completed!.usage!.total_tokens });
    });

    it('embeddings (the SDK asks for base64 and decodes it)', async () => {
      const result = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
      expect(upstream.requests[0].json.encoding_format).toBe('base64');
      expect(result.data.map((d) => d.embedding)).toEqual([expectedEmbedding(0), expectedEmbedding(1)]);
      expect(result.usage.prompt_tokens).toBe(2);
    });

    it('a transcription upload above 25 MB arrives whole, with the content-length the client sent', async () => {
      const audio = randomBytes(BIG_AUDIO_BYTES);
      const result = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(audio, 'speech.wav', { type: 'audio/wav' }) });
      expect(result.text).toBe(`transcribed ${BIG_AUDIO_BYTES} bytes`);
      const seen = upstream.requests[0];
      expect(seen.files[0]).toMatchObject({ field: 'file', filename: 'speech.wav', size: BIG_AUDIO_BYTES, sha256: sha256(audio) });
      expect(seen.fields.model).toBe('whisper-1');
      expect(seen.headers['content-length']).toBe(String(seen.bytes));
      expect(seen.headers['transfer-encoding']).toBeUndefined();
      expect(seen.headers.authorization).toBe('Bearer sk-upstream-clients-secret');
      expect(await usageOf('/v1/audio/transcriptions')).toMatchObject({ total_tokens: expect.any(Number) });
    }, 30_000);

    it('a file upload', async () => {
      const lines = Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini' } })).join('\n');
      const file = await client.files.create({ file: await toFile(Buffer.from(lines), 'batch.jsonl'), purpose: 'batch' });
      expect(file).toMatchObject({ id: 'file-faithful', object: 'file', bytes: Buffer.byteLength(lines), filename: 'batch.jsonl', purpose: 'batch' });
      expect(upstream.requests[0].files[0].sha256).toBe(sha256(Buffer.from(lines)));
    });

    it('speech: the audio arrives byte for byte', async () => {
      const answer = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hello' });
      expect(answer.headers.get('content-type')).toBe('audio/mpeg');
      expect(Buffer.from(await answer.arrayBuffer()).equals(speechBytes())).toBe(true);
    });

    it('an upload over UPLOAD_LIMIT_BYTES is a 413 APIError (not a connection error, not retried); the upstream sees nothing', async () => {
      const retrying = new OpenAI({ apiKey: KEY, baseURL: `${small.url}/v1`, maxRetries: 2 });
      for (const size of [2 * 1024 * 1024, BIG_AUDIO_BYTES]) {
        const failure = await retrying.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(randomBytes(size), 'big.wav') }).catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(APIError);
        expect(failure).not.toBeInstanceOf(APIConnectionError);
        expect((failure as APIError).status).toBe(413);
        expect((failure as APIError).message).toMatch(/UPLOAD_LIMIT_BYTES/);
      }
      // Under the limit the same gateway takes it.
      const fits = await retrying.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(randomBytes(512 * 1024), 'ok.wav') });
      expect(fits.text).toBe(`transcribed ${512 * 1024} bytes`);
      expect(upstream.requests).toHaveLength(1);
    });
  });

  describe('ai + @ai-sdk/openai (Vercel AI SDK)', () => {
    const provider = () => createOpenAI({ apiKey: KEY, baseURL: baseURL() });

    it('chat completions: text, stream, and a tool loop', async () => {
      const openai = provider();
      const generated = await generateText({ model: openai.chat('gpt-4o-mini'), prompt: 'Weather?' });
      expect(generated.text).toBe(REPLY);
      expect(generated.usage.outputTokens).toBeGreaterThan(0);

      const streamed = streamText({ model: openai.chat('gpt-4o-mini'), prompt: 'Weather?' });
      let text = '';
      for await (const part of streamed.textStream) text += part;
      expect(text).toBe(REPLY);
      expect((await streamed.usage).totalTokens).toBeGreaterThan(0);

      const cities: string[] = [];
      const loop = await generateText({
        model: openai.chat('gpt-4o-mini'),
        prompt: 'Weather in Paris?',
        tools: {
          get_weather: tool({
            description: 'Weather in a city',
            inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
            execute: async ({ city }) => {
              cities.push(city);
              return { city, sky: 'sunny' };
            },
          }),
        },
        stopWhen: stepCountIs(3),
      });
      expect(cities).toEqual(['Paris']);
      expect(loop.steps).toHaveLength(2);
      expect(loop.text).toBe(REPLY);
      expect(upstream.requests.at(-1)!.json.messages.some((m: { role: string }) => m.role === 'tool')).toBe(true);
    });

    it('responses: text and stream', async () => {
      const openai = provider();
      const generated = await generateText({ model: openai.responses('gpt-4o-mini'), prompt: 'Weather?' });
      expect(generated.text).toBe(REPLY);
      expect(generated.usage.totalTokens).toBeGreaterThan(0);
      const streamed = streamText({ model: openai.responses('gpt-4o-mini'), prompt: 'Weather?' });
      let text = '';
      for await (const part of streamed.textStream) text += part;
      expect(text).toBe(REPLY);
      expect((await streamed.usage).outputTokens).toBeGreaterThan(0);
      expect(upstream.requests.map((r) => r.path)).toEqual(['/v1/responses', '/v1/responses']);
    });

    it('embeddings', async () => {
      const { embedding } = await embed({ model: provider().embedding('text-embedding-3-small'), value: 'a' });
      expect(embedding).toEqual(expectedEmbedding(0));
    });

    it('a transcription upload above 25 MB, and speech', async () => {
      const audio = randomBytes(BIG_AUDIO_BYTES);
      const result = await transcribe({ model: provider().transcription('whisper-1'), audio });
      expect(result.text).toBe(`transcribed ${BIG_AUDIO_BYTES} bytes`);
      expect(upstream.requests[0].files[0]).toMatchObject({ size: BIG_AUDIO_BYTES, sha256: sha256(audio) });
      expect(upstream.requests[0].headers['content-length']).toBe(String(upstream.requests[0].bytes));

      const speech = await generateSpeech({ model: provider().speech('tts-1'), text: 'Hello', voice: 'alloy' });
      expect(Buffer.from(speech.audio.uint8Array).equals(speechBytes())).toBe(true);
    }, 30_000);
  });

  describe('@langchain/openai', () => {
    const options = () => ({ model: 'gpt-4o-mini', apiKey: KEY, maxRetries: 0, configuration: { baseURL: baseURL() } });

    it('chat completions: invoke, stream, and tool calls', async () => {
      const chat = new ChatOpenAI(options());
      const reply = await chat.invoke('Weather?');
      expect(reply.content).toBe(REPLY);
      expect(reply.usage_metadata?.total_tokens).toBeGreaterThan(0);

      let text = '';
      for await (const chunk of await chat.stream('Weather?')) text += String(chunk.content);
      expect(text).toBe(REPLY);

      const withTools = await chat.bindTools([WEATHER_TOOL]).invoke('Weather in Paris?');
      expect(withTools.tool_calls).toEqual([expect.objectContaining({ name: 'get_weather', args: { city: 'Paris' }, id: 'call_abc123' })]);
    });

    it('responses: invoke and stream', async () => {
      const chat = new ChatOpenAI({ ...options(), useResponsesApi: true });
      const reply = await chat.invoke('Weather?');
      expect(reply.text).toBe(REPLY);
      let text = '';
      for await (const chunk of await chat.stream('Weather?')) text += chunk.text;
      expect(text).toBe(REPLY);
      expect(upstream.requests.map((r) => r.path)).toEqual(['/v1/responses', '/v1/responses']);
    });

    it('embeddings', async () => {
      const embeddings = new OpenAIEmbeddings({ model: 'text-embedding-3-small', apiKey: KEY, maxRetries: 0, configuration: { baseURL: baseURL() } });
      expect(await embeddings.embedDocuments(['a', 'b'])).toEqual([expectedEmbedding(0), expectedEmbedding(1)]);
    });
  });
});
