import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { byteEstimate, estimatePromptTokens, requestedOutput } from './token-estimate';

describe('token estimate', () => {
  it('counts chat messages with the model tokenizer and OpenAI chat-format overhead', () => {
    // "Hello world" is 2 tokens in o200k and cl100k; role "user" is 1; 3 per message + 3 reply priming.
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello world' }] };
    expect(estimatePromptTokens('/chat/completions', body)).toBe(3 + 1 + 2 + 3);
    expect(estimatePromptTokens('/chat/completions', { ...body, model: 'gpt-4' })).toBe(9);
    expect(estimatePromptTokens('/chat/completions', { ...body, model: 'openai/gpt-4o' })).toBe(9);
  });

  it('uses bytes/4 for models outside the OpenAI family', () => {
    const body = { model: 'llama-3-70b', messages: [{ role: 'user', content: 'Hello world' }] };
    expect(estimatePromptTokens('/chat/completions', body)).toBe(3 + byteEstimate('user') + byteEstimate('Hello world') + 3);
  });

  it('reads prompts of completions, embeddings and the Responses API', () => {
    expect(estimatePromptTokens('/completions', { model: 'gpt-3.5-turbo-instruct', prompt: ['Hello world', 'Hello world'] })).toBe(4);
    expect(estimatePromptTokens('/embeddings', { model: 'text-embedding-3-small', input: [[1, 2, 3], [4]] })).toBe(4);
    expect(estimatePromptTokens('/responses', { model: 'gpt-4o', input: 'Hello world', instructions: 'Hello world' })).toBe(2 + 3 + 2);
  });

  it('does not choke on special-token text, and stays fast on a long run without spaces', () => {
    expect(estimatePromptTokens('/completions', { model: 'gpt-4o', prompt: 'a <|endoftext|> b' })).toBeGreaterThan(3);
    const started = Date.now();
    const tokens = estimatePromptTokens('/completions', { model: 'gpt-4o', prompt: 'x'.repeat(2_000_000) });
    // Beyond the tokenized prefix the rest counts as bytes/4: never fewer tokens than that.
    expect(tokens).toBeGreaterThan(2_000_000 / 4 - 64 * 1024);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('refuses (400 invalid_request) a body too deeply nested to count, wherever it nests, instead of overflowing the stack', () => {
    const deep = JSON.parse('['.repeat(20_000) + ']'.repeat(20_000));
    const cases: Array<[string, Record<string, unknown>]> = [
      ['/chat/completions', { model: 'gpt-4o', messages: [], tools: deep }],
      ['/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: [deep] }] }],
      ['/chat/completions', { model: 'gpt-4o', messages: [{ role: 'assistant', tool_calls: deep }] }],
      ['/embeddings', { model: 'text-embedding-3-small', input: deep }],
      ['/completions', { model: 'gpt-4o', prompt: [deep] }],
      ['/images/generations', { model: 'x', prompt: deep }],
    ];
    for (const [path, body] of cases) {
      let error: unknown;
      try {
        estimatePromptTokens(path, body);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(GatewayError);
      expect((error as GatewayError).code).toBe(ErrorCode.InvalidRequest);
    }
    // Nesting JSON can still write is counted as before.
    const nested = JSON.parse('['.repeat(100) + '"a"' + ']'.repeat(100));
    expect(estimatePromptTokens('/chat/completions', { model: 'gpt-4o', messages: [], tools: nested })).toBeGreaterThan(0);
    expect(estimatePromptTokens('/embeddings', { model: 'x', input: nested })).toBeGreaterThan(0);
  });
});

describe('output limits', () => {
  it('reads every output-limit field and reserves the largest', () => {
    expect(requestedOutput({ max_tokens: 10, max_completion_tokens: 20 })).toEqual({ field: 'max_completion_tokens', tokens: 20 });
    expect(requestedOutput({ max_tokens: 30, max_completion_tokens: 20, max_output_tokens: 5 })).toEqual({ field: 'max_tokens', tokens: 30 });
    expect(requestedOutput({ max_tokens: null })).toBeNull();
  });

  it.each(['100', 1.5, -1, 1e300, true, {}])('refuses an output limit of %j', (value) => {
    expect(() => requestedOutput({ max_tokens: 1, max_completion_tokens: value })).toThrow(GatewayError);
  });
});
