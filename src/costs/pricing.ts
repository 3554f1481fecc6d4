import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { MAX_PRICE_PER_MTOK_USD } from '../common/numeric-limits';
import { ConfigError } from '../config/config-error';
import { GatewayFile } from '../config/gateway-file';

/**
 * A model's prices as integers: pico-USD (1e-12 USD) per token. One USD per million tokens is exactly
 * 1,000,000 pico-USD per token, and LiteLLM's USD-per-token floats become integers after × 1e12, so every
 * cost below is integer arithmetic (BigInt), never a float sum.
 */
export interface ModelPrice {
  inputPico: bigint;
  outputPico: bigint;
  /** Prompt tokens served from the provider's prompt cache; the input price when not set. */
  cachedInputPico: bigint;
}

export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  /** Part of promptTokens read from the prompt cache. */
  cachedTokens: number;
}

const PICO_PER_MICRO = 1_000_000n;

/**
 * Cost in integer USD micros: Σ tokens × pico-price, rounded up to the next micro once per request
 * (a request is never charged less than its price; rounding is at most 1 micro).
 */
export function costMicros(price: ModelPrice, usage: TokenCounts): number {
  const cached = BigInt(Math.min(usage.cachedTokens, usage.promptTokens));
  const uncached = BigInt(usage.promptTokens) - cached;
  const pico = uncached * price.inputPico + cached * price.cachedInputPico + BigInt(usage.completionTokens) * price.outputPico;
  return Number((pico + PICO_PER_MICRO - 1n) / PICO_PER_MICRO);
}

/** The prices of every known model: `pricing` in gateway.json over `PRICING_FILE` (LiteLLM format). */
export class PricingTable {
  constructor(private readonly prices: ReadonlyMap<string, ModelPrice>) {}

  get size(): number {
    return this.prices.size;
  }

  /** Exact name first, then the name without a `provider/` prefix (`openai/gpt-4o` → `gpt-4o`). */
  lookup(model: string | null): ModelPrice | null {
    if (model === null) return null;
    return this.prices.get(model) ?? this.prices.get(model.slice(model.lastIndexOf('/') + 1)) ?? null;
  }
}

/** USD per million tokens (gateway.json) → pico-USD per token. */
const fromPerMillion = (usd: number): bigint => BigInt(Math.round(usd * 1e6));
/** USD per token (LiteLLM) → pico-USD per token. */
const fromPerToken = (usd: number): bigint => BigInt(Math.round(usd * 1e12));

/** USD per token at most: MAX_PRICE_PER_MTOK_USD, as in gateway.json (so that a request's cost stays an exact integer). */
const MAX_PRICE_PER_TOKEN_USD = MAX_PRICE_PER_MTOK_USD / 1e6;
const isPrice = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_PRICE_PER_TOKEN_USD;

/**
 * Builds the table. `PRICING_FILE` is LiteLLM's `model_prices_and_context_window.json`: an object of
 * model → `{input_cost_per_token, output_cost_per_token, cache_read_input_token_cost?, …}` in USD per
 * token; entries without both token prices (image or audio models, `sample_spec`) are skipped.
 * Throws ConfigError naming the file and entry when it cannot be used.
 */
export function loadPricing(gatewayPricing: GatewayFile['pricing'], pricingFile: string | undefined): PricingTable {
  const prices = new Map<string, ModelPrice>();
  if (pricingFile !== undefined) {
    for (const [model, price] of readLiteLlmFile(pricingFile)) prices.set(model, price);
  }
  for (const [model, p] of Object.entries(gatewayPricing)) {
    const input = fromPerMillion(p.input_per_mtok_usd);
    prices.set(model, {
      inputPico: input,
      outputPico: fromPerMillion(p.output_per_mtok_usd),
      cachedInputPico: p.cached_input_per_mtok_usd === undefined ? input : fromPerMillion(p.cached_input_per_mtok_usd),
    });
  }
  return new PricingTable(prices);
}

function readLiteLlmFile(file: string): Map<string, ModelPrice> {
  const resolved = path.resolve(file);
  if (!existsSync(resolved)) throw new ConfigError([`PRICING_FILE: file "${resolved}" does not exist`]);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(resolved, 'utf8'));
  } catch (error) {
    throw new ConfigError([`PRICING_FILE: "${resolved}" cannot be parsed: ${(error as Error).message}`]);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError([`PRICING_FILE: "${resolved}" must be an object of model name → prices (LiteLLM's format)`]);
  }
  const prices = new Map<string, ModelPrice>();
  const problems: string[] = [];
  for (const [model, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof entry !== 'object' || entry === null) continue;
    const e = entry as Record<string, unknown>;
    if (e.input_cost_per_token === undefined && e.output_cost_per_token === undefined) continue;
    const optionalField = 'cache_read_input_token_cost';
    const offending = ['input_cost_per_token', 'output_cost_per_token', optionalField].find(
      (f) => !(isPrice(e[f]) || (f === optionalField && e[f] === undefined)),
    );
    if (offending !== undefined) {
      problems.push(`PRICING_FILE: ${path.basename(resolved)}: ${model}.${offending} must be a number from 0 to ${MAX_PRICE_PER_TOKEN_USD} (USD per token)`);
      continue;
    }
    const input = fromPerToken(e.input_cost_per_token as number);
    prices.set(model, {
      inputPico: input,
      outputPico: fromPerToken(e.output_cost_per_token as number),
      cachedInputPico: isPrice(e.cache_read_input_token_cost) ? fromPerToken(e.cache_read_input_token_cost) : input,
    });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return prices;
}
