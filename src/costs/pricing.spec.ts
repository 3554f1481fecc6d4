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

  it("reads LiteLLM's file, skips entries without token prices, and lets gateway.json win", () => {
    const table = loadPricing(
      { 'gpt-4o': { input_per_mtok_usd: 3, output_per_mtok_usd: 12 } },
      file({
        sample_spec: { max_tokens: 'set to max output tokens', input_cost_per_token: 0, output_cost_per_token: 0 },
        'gpt-4o': { input_cost_per_token: 2.5e-6, output_cost_per_token: 1e-5 },
        'gpt-4o-mini': { input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7, cache_read_input_token_cost: 7.5e-8, litellm_provider: 'openai' },
        'dall-e-3': { output_cost_per_image: 0.04 },
      }),
    );
    expect(table.lookup('gpt-4o-mini')).toEqual({ inputPico: 150_000n, outputPico: 600_000n, cachedInputPico: 75_000n });
    expect(table.lookup('openai/gpt-4o-mini')).toEqual(table.lookup('gpt-4o-mini'));
    expect(table.lookup('gpt-4o')).toEqual({ inputPico: 3_000_000n, outputPico: 12_000_000n, cachedInputPico: 3_000_000n });
    expect(table.lookup('dall-e-3')).toBeNull();
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
  });
});
