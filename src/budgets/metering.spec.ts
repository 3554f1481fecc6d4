import { GatewayError } from '../common/errors/gateway-error';
import { loadPricing } from '../costs/pricing';
import { MeterContext, billing, estimate, estimateCost, meterOf, outputTokensOf, tokensOf } from './metering';

const prices = loadPricing(
  {
    'gpt-4o': { input_per_mtok_usd: 2.5, output_per_mtok_usd: 10, max_output_tokens: 16_384 },
    'whisper-1': { input_cost_per_second: 0.0001 },
    'gpt-4o-transcribe': { input_per_mtok_usd: 2.5, output_per_mtok_usd: 10 },
    'tts-1': { input_cost_per_character: 0.000015 },
    'dall-e-3': { output_cost_per_image: 0.04 },
    'gpt-image-1': { input_per_mtok_usd: 5, output_per_mtok_usd: 40 },
  },
  undefined,
);
const context = (model: string | null, uploadBytes = 0): MeterContext => ({ price: prices.lookup(model), defaultOutputTokens: 1024, uploadBytes });
const messages = [{ role: 'user', content: 'hi' }];

describe('metering', () => {
  it('meters each endpoint family; anything that bills nothing is not metered, an unknown POST is metered as generation', () => {
    expect(meterOf('POST', '/chat/completions')).toBe('generate');
    expect(meterOf('POST', '/responses')).toBe('generate');
    expect(meterOf('POST', '/embeddings')).toBe('embed');
    expect(meterOf('POST', '/images/edits')).toBe('images');
    expect(meterOf('POST', '/audio/speech')).toBe('speech');
    expect(meterOf('POST', '/audio/translations')).toBe('audio-in');
    for (const path of ['/moderations', '/files', '/uploads', '/uploads/u1/parts', '/uploads/u1/complete', '/batches', '/batches/b1/cancel', '/responses/r1/cancel', '/responses/input_tokens', '/chat/completions/c1']) {
      expect([path, meterOf('POST', path)]).toEqual([path, 'none']);
    }
    for (const method of ['GET', 'DELETE']) expect(meterOf(method, '/responses/r1')).toBe('none');
    expect(meterOf('POST', '/videos')).toBe('generate');
    expect(meterOf('POST', '/something/new')).toBe('generate');
  });

  it('reserves the requested output limit per choice, else the model maximum, else the default; embeddings produce none', () => {
    const chat = (body: Record<string, unknown>, model: string | null = 'gpt-4o') => estimate('generate', '/chat/completions', { model, messages, ...body }, context(model));
    expect(chat({ max_tokens: 7 })).toMatchObject({ perChoice: 7, choices: 1, outputField: 'max_tokens' });
    expect(chat({ max_completion_tokens: 9 }, 'o3')).toMatchObject({ perChoice: 9, outputField: 'max_completion_tokens' });
    expect(chat({})).toMatchObject({ perChoice: 16_384, outputField: null });
    expect(chat({}, 'unpriced-model')).toMatchObject({ perChoice: 1024, outputField: null });
    // Asking for more than the model can produce reserves what it can produce.
    expect(chat({ max_tokens: 100_000 })).toMatchObject({ perChoice: 16_384, outputField: 'max_tokens' });
    expect(estimate('generate', '/responses', { model: 'gpt-4o', input: 'hi', max_output_tokens: 11 }, context('gpt-4o'))).toMatchObject({ perChoice: 11 });
    expect(outputTokensOf(estimate('embed', '/embeddings', { model: 'gpt-4o', input: 'hi', max_tokens: 5 }, context('gpt-4o')))).toBe(0);
    // null is OpenAI's "not set".
    expect(chat({ max_tokens: null })).toMatchObject({ perChoice: 16_384, outputField: null });
  });

  it('reserves n (and best_of, the larger) choices of output', () => {
    const worst = estimate('generate', '/chat/completions', { model: 'gpt-4o', messages, max_tokens: 100, n: 16 }, context('gpt-4o'));
    expect(worst).toMatchObject({ choices: 16, perChoice: 100 });
    expect(outputTokensOf(worst)).toBe(1600);
    expect(tokensOf(worst)).toBe(worst.promptTokens + 1600);
    expect(estimate('generate', '/completions', { model: 'gpt-4o', prompt: 'x', max_tokens: 10, n: 2, best_of: 5 }, context('gpt-4o')).choices).toBe(5);
    for (const n of [0, -1, 1.5, '2', 129, 1e300]) {
      expect(() => estimate('generate', '/chat/completions', { model: 'gpt-4o', messages, n }, context('gpt-4o'))).toThrow(GatewayError);
    }
  });

  it('reserves an output limit above 10^9 as 10^9; refuses one that is not a safe integer', () => {
    for (const max_tokens of [Number.MAX_SAFE_INTEGER, 1_000_000_001]) {
      expect(estimate('generate', '/chat/completions', { model: 'x', messages, max_tokens }, context('x'))).toMatchObject({ perChoice: 1_000_000_000 });
    }
    // n × 10^9 stays within what one request may reserve.
    expect(outputTokensOf(estimate('generate', '/chat/completions', { model: 'x', messages, max_tokens: 1e9, n: 128 }, context('x')))).toBe(1_000_000_000);
    for (const max_tokens of [1e300, 2 ** 53 + 1, 1.5, -1, '100']) {
      expect(() => estimate('generate', '/chat/completions', { model: 'x', messages, max_tokens }, context('x'))).toThrow(GatewayError);
    }
  });

  it('reserves speech by its characters, dall-e by its images, whisper by the longest audio the upload holds', () => {
    const speech = estimate('speech', '/audio/speech', { model: 'tts-1', input: 'héllo wörld', voice: 'alloy' }, context('tts-1'));
    expect(speech).toMatchObject({ promptTokens: 0, perChoice: 0, units: { unit: 'characters', quantity: 11, exact: true } });
    expect(estimateCost(speech, prices.lookup('tts-1'))).toBe(165);
    expect(tokensOf(speech)).toBe(0);

    const images = estimate('images', '/images/generations', { model: 'dall-e-3', prompt: 'a cat', n: 3 }, context('dall-e-3'));
    expect(images.units).toEqual({ unit: 'images', quantity: 3, exact: false });
    expect(estimateCost(images, prices.lookup('dall-e-3'))).toBe(120_000);
    // gpt-image-1 is billed in tokens: prompt + n × output.
    const tokenImages = estimate('images', '/images/generations', { model: 'gpt-image-1', prompt: 'a cat', n: 2 }, context('gpt-image-1'));
    expect(tokenImages).toMatchObject({ units: null, choices: 2, perChoice: 1024 });

    // 1 MB at 16 kbit/s at the least is 500 s at the most.
    const whisper = estimate('audio-in', '/audio/transcriptions', null, context('whisper-1', 1_000_000));
    expect(whisper.units).toEqual({ unit: 'seconds', quantity: 500, exact: false });
    expect(tokensOf(whisper)).toBe(0);
    const transcribe = estimate('audio-in', '/audio/transcriptions', null, context('gpt-4o-transcribe', 1_000_000));
    expect(transcribe).toMatchObject({ units: null, promptTokens: 500 * 17, perChoice: 1024 });
  });

  it('knows which models are priced for what they are billed in', () => {
    expect(billing('speech', prices.lookup('tts-1'))).toEqual({ unit: 'characters', priced: true });
    expect(billing('speech', null)).toEqual({ unit: 'characters', priced: false });
    expect(billing('audio-in', prices.lookup('whisper-1'))).toEqual({ unit: 'seconds', priced: true });
    expect(billing('audio-in', prices.lookup('gpt-4o-transcribe'))).toEqual({ unit: 'tokens', priced: true });
    expect(billing('images', prices.lookup('gpt-image-1'))).toEqual({ unit: 'tokens', priced: true });
    // A chat model priced only per image cannot be billed for tokens.
    expect(billing('generate', prices.lookup('dall-e-3'))).toEqual({ unit: 'tokens', priced: false });
    expect(billing('images', prices.lookup('whisper-1'))).toEqual({ unit: 'images', priced: false });
  });
});
