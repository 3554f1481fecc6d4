import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { encode } from 'gpt-tokenizer/cjs/encoding/o200k_base';
import { estimatePromptTokens, promptTokens, requestedOutput } from './token-estimate';
/** bytes/4, rounded up: what text without a tokenizer is expected to count. */
const byteEstimate = (text: string) => Math.ceil(Buffer.byteLength(text) / 4);

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

  it('reserves text no tokenizer here counts at one token per byte, and expects bytes/4 of it', () => {
    const text = 'Hello world, 你好世界 🌍';
    const bytes = Buffer.byteLength(text);
    const body = { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: text }], tools: [{ name: 'x' }] };
    const tools = JSON.stringify(body.tools);
    expect(promptTokens('/chat/completions', body)).toEqual({
      expected: 3 + 3 + byteEstimate('user') + byteEstimate(text) + byteEstimate(tools),
      ceiling: 3 + 3 + 4 + bytes + tools.length,
    });
    // OpenAI-family text is counted by its tokenizer, the same on both sides…
    const openai = promptTokens('/chat/completions', { ...body, model: 'gpt-4o' });
    expect(openai.ceiling).toBe(openai.expected);
    // …up to the tokenized share of a request; the rest is reserved by its bytes.
    const long = promptTokens('/completions', { model: 'gpt-4o', prompt: 'x'.repeat(200_000) });
    expect(long.ceiling - long.expected).toBe(200_000 - 64 * 1024 - Math.ceil((200_000 - 64 * 1024) / 4));
  });

  it('the per-byte ceiling holds for a real byte-level BPE on hostile text (o200k: digits, CJK, emoji, whitespace, random code points)', () => {
    let seed = 7;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    // Any code point but the surrogates (which no well-formed text holds alone).
    const codePoint = () => String.fromCodePoint(((c) => (c >= 0xd800 && c <= 0xdfff ? c + 0x800 : c))(1 + random(0x2ffff)));
    const alphabets = ['0123456789', '你好世界中文字符', '🌍🚀👍🏽', ' \n\t', 'abcXYZ{}[]":,'];
    for (let i = 0; i < 300; i++) {
      const letters = alphabets[random(alphabets.length)];
      let text = '';
      for (let j = 0; j < 1 + random(400); j++) text += random(5) === 0 ? codePoint() : [...letters][random([...letters].length)];
      expect(encode(text).length).toBeLessThanOrEqual(Buffer.byteLength(text));
      expect(promptTokens('/completions', { model: 'claude-x', prompt: text }).ceiling).toBe(Buffer.byteLength(text));
    }
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
