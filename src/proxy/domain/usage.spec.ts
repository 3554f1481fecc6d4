import { usageFrom } from './usage';

describe('usageFrom', () => {
  it('reads a realtime response.done event: response.usage with input_token_details.cached_tokens', () => {
    const event = {
      type: 'response.done',
      response: {
        usage: {
          total_tokens: 80,
          input_tokens: 50,
          output_tokens: 30,
          input_token_details: { cached_tokens: 12, text_tokens: 20, audio_tokens: 30 },
          output_token_details: { text_tokens: 10, audio_tokens: 20 },
        },
      },
    };
    expect(usageFrom(event)).toEqual({ promptTokens: 50, completionTokens: 30, cachedTokens: 12, totalTokens: 80 });
  });

  it('still reads chat completions and the Responses API', () => {
    expect(usageFrom({ usage: { prompt_tokens: 5, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 1 } } })).toEqual({ promptTokens: 5, completionTokens: 2, cachedTokens: 1, totalTokens: 7 });
    expect(usageFrom({ response: { usage: { input_tokens: 4, output_tokens: 3, input_tokens_details: { cached_tokens: 2 } } } })).toEqual({ promptTokens: 4, completionTokens: 3, cachedTokens: 2, totalTokens: 7 });
    expect(usageFrom({ type: 'response.done', response: { usage: null } })).toBeNull();
  });
});
