import { gatewayFileSchema } from '../../config/gateway-file';
import { usageDialect } from '../usage';
import { ANTHROPIC_TO_OPENAI } from './anthropic-to-openai';
import { OPENAI_TO_ANTHROPIC } from './openai-to-anthropic';

const backend = (type: string, model_map: Record<string, string> = {}) => gatewayFileSchema.parse({ backends: [{ name: 'b', type, base_url: 'http://x', model_map }] }).backends[0];
const event = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}`;
const dataOf = (out: string) =>
  out
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)));

describe('OpenAI chat → Anthropic Messages', () => {
  it('refuses every field it cannot carry, naming them', () => {
    expect(() => OPENAI_TO_ANTHROPIC.check({ model: 'c', messages: [], logit_bias: {}, seed: 1, n: 1 })).toThrow('not supported for a model served by an Anthropic backend: logit_bias, seed');
    expect(() => OPENAI_TO_ANTHROPIC.check({ model: 'c', messages: [{ role: 'user', content: [{ type: 'input_audio' }] }] })).toThrow(/only text and image_url parts/);
    expect(() => OPENAI_TO_ANTHROPIC.check({ model: 'c', messages: [], temperature: 1.5 })).toThrow(/temperature above 1/);
    // null is "not set" in OpenAI's API.
    expect(() => OPENAI_TO_ANTHROPIC.check({ model: 'c', messages: [], seed: null, n: 1 })).not.toThrow();
  });

  it('maps the model, merges consecutive tool results into one user turn', () => {
    const body = JSON.parse(
      OPENAI_TO_ANTHROPIC.body(
        {
          model: 'claude',
          messages: [
            { role: 'user', content: 'two cities' },
            { role: 'assistant', content: null, tool_calls: [{ id: 'a', type: 'function', function: { name: 'w', arguments: '{"c":1}' } }, { id: 'b', type: 'function', function: { name: 'w', arguments: '{"c":2}' } }] },
            { role: 'tool', tool_call_id: 'a', content: 'sun' },
            { role: 'tool', tool_call_id: 'b', content: [{ type: 'text', text: 'rain' }] },
          ],
        },
        backend('anthropic', { claude: 'claude-sonnet-4-5-20250929' }),
        77,
      ),
    );
    expect(body).toEqual({
      model: 'claude-sonnet-4-5-20250929',
      max_tokens: 77,
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'two cities' }] },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'a', name: 'w', input: { c: 1 } }, { type: 'tool_use', id: 'b', name: 'w', input: { c: 2 } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'a', content: 'sun' }, { type: 'tool_result', tool_use_id: 'b', content: 'rain' }] },
      ],
    });
  });

  it('turns the event stream into chunks: two tool calls by index, the stop reason, usage only when asked', () => {
    const writer = OPENAI_TO_ANTHROPIC.answer({ stream: true });
    const out = [
      event('message_start', { message: { id: 'msg_1', model: 'claude', usage: { input_tokens: 5, cache_read_input_tokens: 3, output_tokens: 1 } } }),
      event('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'a', name: 'w', input: {} } }),
      event('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '{"c":' } }),
      event('content_block_start', { index: 1, content_block: { type: 'tool_use', id: 'b', name: 'w', input: {} } }),
      event('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"c":2}' } }),
      event('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '1}' } }),
      event('ping', {}),
      event('message_delta', { delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 9 } }),
      event('message_stop', {}),
    ].map((e) => writer.event(e));
    const chunks = dataOf(out.join(''));
    expect(chunks.map((c) => c.choices[0].delta.tool_calls?.[0].index ?? null)).toEqual([null, 0, 0, 1, 1, 0, null]);
    expect(chunks.at(-1).choices[0].finish_reason).toBe('length');
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
    expect(out.join('')).toMatch(/data: \[DONE\]\n\n$/);
    expect(writer.done).toBe(true);

    const counted = OPENAI_TO_ANTHROPIC.answer({ stream: true, stream_options: { include_usage: true } });
    const usage = dataOf([event('message_start', { message: { usage: { input_tokens: 5, cache_read_input_tokens: 3, output_tokens: 1 } } }), event('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 9 } }), event('message_stop', {})].map((e) => counted.event(e)).join('')).at(-1);
    expect(usage).toMatchObject({ choices: [], usage: { prompt_tokens: 8, completion_tokens: 9, total_tokens: 17, prompt_tokens_details: { cached_tokens: 3 } } });
  });

  it("answers the backend's errors in OpenAI's shape", () => {
    expect(OPENAI_TO_ANTHROPIC.answer({}).error(429, { type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } })).toEqual({
      error: { message: 'slow down', type: 'rate_limit_exceeded', code: 'rate_limit_error', param: null },
    });
  });
});

describe('Anthropic Messages → OpenAI chat', () => {
  it('refuses what chat completions cannot carry; accepts cache_control hints and disabled thinking', () => {
    expect(() => ANTHROPIC_TO_OPENAI.check({ model: 'g', max_tokens: 5, messages: [], top_k: 3, thinking: { type: 'enabled', budget_tokens: 10 } })).toThrow('not supported for a model served by an OpenAI backend: top_k, thinking');
    expect(() => ANTHROPIC_TO_OPENAI.check({ model: 'g', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }] })).toThrow(/document blocks/);
    expect(() => ANTHROPIC_TO_OPENAI.check({ model: 'g', max_tokens: 5, messages: [], tools: [{ type: 'web_search_20250305', name: 'web_search' }] })).toThrow(/only custom tools/);
    expect(() =>
      ANTHROPIC_TO_OPENAI.check({ model: 'g', max_tokens: 5, thinking: { type: 'disabled' }, system: [{ type: 'text', text: 's', cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: [{ type: 'text', text: 'x', cache_control: { type: 'ephemeral' } }] }] }),
    ).not.toThrow();
  });

  it('puts max_completion_tokens for reasoning models and asks a stream for its usage', () => {
    const body = JSON.parse(ANTHROPIC_TO_OPENAI.body({ model: 'o4-mini', max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'x' }] }, backend('openai'), 5));
    expect(body).toEqual({ model: 'o4-mini', max_completion_tokens: 5, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'x' }] });
  });

  it('turns chunks into the Messages event stream, with the usage of the include_usage chunk in message_delta', () => {
    const writer = ANTHROPIC_TO_OPENAI.answer({});
    const chunk = (delta: object, finish: string | null = null, usage: object | null = null) => `data: ${JSON.stringify({ id: 'c1', model: 'gpt', choices: finish === 'none' ? [] : [{ index: 0, delta, finish_reason: finish }], usage })}`;
    const out = [
      chunk({ role: 'assistant', content: '' }),
      chunk({ content: 'Hel' }),
      chunk({ content: 'lo' }),
      chunk({ tool_calls: [{ index: 0, id: 't1', type: 'function', function: { name: 'w', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{}' } }] }),
      chunk({}, 'tool_calls'),
      chunk({}, 'none', { prompt_tokens: 10, completion_tokens: 4, prompt_tokens_details: { cached_tokens: 6 } }),
      'data: [DONE]',
    ]
      .map((e) => writer.event(e))
      .join('');
    const events = out
      .split('\n\n')
      .filter(Boolean)
      .map((e) => JSON.parse(e.split('\n')[1].slice(6)));
    expect(events.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(events[8]).toMatchObject({ delta: { stop_reason: 'tool_use' }, usage: { input_tokens: 4, cache_read_input_tokens: 6, output_tokens: 4 } });
    expect(writer.done).toBe(true);
  });
});

describe('usage per backend type', () => {
  it('anthropic: message_delta restating input and cache counts overrides message_start', () => {
    const dialect = usageDialect('anthropic')!;
    const start = dialect.fromEvent({ type: 'message_start', message: { usage: { input_tokens: 10, cache_creation_input_tokens: 100, cache_read_input_tokens: 0, output_tokens: 1 } } }, null);
    const end = dialect.fromEvent({ type: 'message_delta', usage: { output_tokens: 30, input_tokens: 12 } }, start);
    expect(end).toEqual({ promptTokens: 112, completionTokens: 30, cachedTokens: 0, cacheWriteTokens: 100, totalTokens: 142 });
  });

  it('gemini: thinking tokens are output, tool-use prompt tokens are input', () => {
    const dialect = usageDialect('gemini')!;
    expect(dialect.fromJson(new Map([['usageMetadata', { promptTokenCount: 50, toolUsePromptTokenCount: 5, candidatesTokenCount: 7, thoughtsTokenCount: 20, cachedContentTokenCount: 30, totalTokenCount: 82 }]]))).toEqual({
      promptTokens: 55,
      completionTokens: 27,
      cachedTokens: 30,
      totalTokens: 82,
    });
    expect(usageDialect('openai')).toBeNull();
  });
});
