import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../config/config-error';
import { costMicros, loadPricing } from './pricing';

describe('pricing', () => {
  let dir: string;
  const file = (content: unknown) => {
    const target = path.join(dir, 'prices.json');
    writeFileSync(target, typeof content === 'string' ? content : JSON.stringify(content));
    return target;
  };

  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'ditto-pricing-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('prices usage in integer micros, cached tokens at their rate, rounding up once per request', () => {
    const table = loadPricing({ m: { input_per_mtok_usd: 0.15, output_per_mtok_usd: 0.6, cached_input_per_mtok_usd: 0.075 } }, undefined);
    const price = table.lookup('m')!;
    // 1000 × 0.15 + 1000 × 0.075 + 500 × 0.6 = 150 + 75 + 300 micros, exactly.
    expect(costMicros(price, { promptTokens: 2000, cachedTokens: 1000, completionTokens: 500 })).toBe(525);
    // 1 × 0.15 = 0.15 micros → 1.
    expect(costMicros(price, { promptTokens: 1, cachedTokens: 0, completionTokens: 0 })).toBe(1);
    expect(costMicros(price, { promptTokens: 0, cachedTokens: 0, completionTokens: 0 })).toBe(0);
    // No float drift at scale: 10^9 tokens at $0.15/M = $150 = 150,000,000 micros.
    expect(costMicros(price, { promptTokens: 1e9, cachedTokens: 0, completionTokens: 0 })).toBe(150_000_000);
  });

  it('prices tokens to the same micro with or without BigInt, on both sides of 2^53 pico-USD', () => {
    // The reference: every product in BigInt, rounded up once.
    const exact = (p: { input: number; cached: number; write: number; output: number }, prompt: number, cachedTokens: number, writeTokens: number, completion: number) => {
      const cached = Math.min(cachedTokens, prompt);
      const written = Math.min(writeTokens, prompt - cached);
      const pico = BigInt(prompt - cached - written) * BigInt(p.input) + BigInt(cached) * BigInt(p.cached) + BigInt(written) * BigInt(p.write) + BigInt(completion) * BigInt(p.output);
      return Number((pico + 999_999n) / 1_000_000n);
    };
    let seed = 42;
    const random = (max: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.floor((seed / 2 ** 31) * max);
    };
    // Prices from a thousandth of a cent to 10^5 USD per million tokens (the maximum), token counts to 10^9.
    const perMillion = [0.00001, 0.075, 0.15, 0.6, 2.5, 10, 75, 1000, 100_000];
    for (let i = 0; i < 2000; i++) {
      const usd = () => perMillion[random(perMillion.length)];
      const [input, cachedInput, write, output] = [usd(), usd(), usd(), usd()];
      const table = loadPricing({ m: { input_per_mtok_usd: input, cached_input_per_mtok_usd: cachedInput, cache_write_input_per_mtok_usd: write, output_per_mtok_usd: output } }, undefined);
      const price = table.lookup('m')!;
      const p = { input: Number(price.inputPico), cached: Number(price.cachedInputPico), write: Number(price.cacheWriteInputPico), output: Number(price.outputPico) };
      const count = () => [0, 1, 999_999, 1_000_001, random(10_000), random(1e9), 1e9][random(7)];
      const [prompt, cachedTokens, writeTokens, completion] = [count(), count(), count(), count()];
      expect(costMicros(price, { promptTokens: prompt, cachedTokens, cacheWriteTokens: writeTokens, completionTokens: completion })).toBe(exact(p, prompt, cachedTokens, writeTokens, completion));
    }
  });

  it('prices seconds of audio (to the millisecond), speech characters and images, next to tokens', () => {
    const table = loadPricing(
      {
        'whisper-1': { input_cost_per_second: 0.0001 },
        'tts-1': { input_cost_per_character: 0.000015 },
        'dall-e-3': { output_cost_per_image: 0.04 },
      },
      undefined,
    );
    const none = { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
    // 9.2 s × USD 0.0001 = USD 0.00092 = 920 micros; 0.0004 s rounds up to a millisecond's price, then to a micro.
    expect(costMicros(table.lookup('whisper-1')!, { ...none, seconds: 9.2 })).toBe(920);
    expect(costMicros(table.lookup('whisper-1')!, { ...none, seconds: 0.0004 })).toBe(1);
    expect(costMicros(table.lookup('tts-1')!, { ...none, characters: 1000 })).toBe(15_000);
    expect(costMicros(table.lookup('dall-e-3')!, { ...none, images: 2 })).toBe(80_000);
    // A unit the model has no price for adds nothing; tokens of a model priced per unit cost nothing.
    expect(costMicros(table.lookup('dall-e-3')!, { ...none, seconds: 10, promptTokens: 1000 })).toBe(0);
    expect(table.lookup('whisper-1')).toMatchObject({ tokens: false, perSecondPico: 100_000_000n, perCharacterPico: null, perImagePico: null });
  });

  it("reads LiteLLM's file, skips entries without token prices, and lets gateway.json win", () => {
    const table = loadPricing(
      { 'gpt-4o': { input_per_mtok_usd: 3, output_per_mtok_usd: 12 } },
      file({
        sample_spec: { max_tokens: 'set to max output tokens', input_cost_per_token: 0, output_cost_per_token: 0 },
        'gpt-4o': { input_cost_per_token: 2.5e-6, output_cost_per_token: 1e-5 },
        'gpt-4o-mini': { input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7, cache_read_input_token_cost: 7.5e-8, litellm_provider: 'openai' },
        'dall-e-3': { output_cost_per_image: 0.04 },
        'whisper-1': { input_cost_per_second: 0.0001, output_cost_per_second: 0.0001, mode: 'audio_transcription' },
        'tts-1': { input_cost_per_character: 0.000015, mode: 'audio_speech' },
        'claude-sonnet-4-5': { input_cost_per_token: 3e-6, output_cost_per_token: 1.5e-5, cache_creation_input_token_cost: 3.75e-6, cache_read_input_token_cost: 3e-7 },
        'gpt-4.1': { input_cost_per_token: 2e-6, output_cost_per_token: 8e-6, max_output_tokens: 32_768, max_tokens: 1_047_576 },
        'text-embedding-3-small': { input_cost_per_token: 2e-8 },
        '256-x-256/dall-e-2': { input_cost_per_pixel: 3.81469e-8, output_cost_per_pixel: 0 },
      }),
    );
    expect(table.lookup('gpt-4o-mini')).toEqual({
      tokens: true,
      inputPico: 150_000n,
      outputPico: 600_000n,
      cachedInputPico: 75_000n,
      cacheWriteInputPico: 150_000n,
      perSecondPico: null,
      perCharacterPico: null,
      perImagePico: null,
      maxOutputTokens: null,
    });
    expect(table.lookup('openai/gpt-4o-mini')).toEqual(table.lookup('gpt-4o-mini'));
    expect(table.lookup('gpt-4o')).toMatchObject({ inputPico: 3_000_000n, outputPico: 12_000_000n, cachedInputPico: 3_000_000n });
    // Anthropic's cache writes and reads each at their own price.
    const claude = table.lookup('claude-sonnet-4-5')!;
    expect(claude).toMatchObject({ inputPico: 3_000_000n, cacheWriteInputPico: 3_750_000n, cachedInputPico: 300_000n });
    // 1,000 uncached + 2,000 written + 4,000 read in, 100 out: 3000 + 7500 + 1200 + 1500 micros.
    expect(costMicros(claude, { promptTokens: 7000, cachedTokens: 4000, cacheWriteTokens: 2000, completionTokens: 100 })).toBe(13_200);
    // max_output_tokens is the output bound; LiteLLM's legacy max_tokens (here the context size) is not.
    expect(table.lookup('gpt-4.1')?.maxOutputTokens).toBe(32_768);
    expect(table.lookup('dall-e-3')).toMatchObject({ tokens: false, perImagePico: 40_000_000_000n });
    expect(table.lookup('whisper-1')).toMatchObject({ tokens: false, perSecondPico: 100_000_000n });
    expect(table.lookup('tts-1')).toMatchObject({ tokens: false, perCharacterPico: 15_000_000n });
    // One token price without the other: the missing one is 0 (embeddings produce no output).
    expect(table.lookup('text-embedding-3-small')).toMatchObject({ tokens: true, inputPico: 20_000n, outputPico: 0n });
    // Per-pixel prices are not read: that model is unpriced (refused under a cost limit, COST_UNKNOWN_MODEL).
    expect(table.lookup('256-x-256/dall-e-2')).toBeNull();
    expect(table.lookup('unknown')).toBeNull();
  });

  it('names the file and entry when the pricing file cannot be used', () => {
    expect(() => loadPricing({}, path.join(dir, 'missing.json'))).toThrow(/PRICING_FILE: file ".*missing.json" does not exist/);
    expect(() => loadPricing({}, file('{not json'))).toThrow(/PRICING_FILE: .* cannot be parsed/);
    try {
      loadPricing({}, file({ bad: { input_cost_per_token: 'cheap', output_cost_per_token: 1e-6 } }));
      throw new Error('expected a ConfigError');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toEqual(['PRICING_FILE: prices.json: bad.input_cost_per_token must be a number from 0 to 0.1 (USD per token)']);
    }
    // A price a cost could not be computed exactly with (USD 0.1 per token at most).
    expect(() => loadPricing({}, file({ absurd: { input_cost_per_token: 1e-6, output_cost_per_token: 1e300 } }))).toThrow(/absurd.output_cost_per_token must be a number from 0 to 0.1/);
    expect(() => loadPricing({}, file({ pricey: { input_cost_per_second: 1e6 } }))).toThrow(/pricey.input_cost_per_second must be a number from 0 to 100 \(USD per unit\)/);
  });
});
