import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { MAX_PRICE_PER_MTOK_USD, MAX_PRICE_PER_UNIT_USD, MAX_REQUEST_TOKENS } from '../common/numeric-limits';
import { ConfigError } from '../config/config-error';
import { GatewayFile, UNIT_PRICE_FIELDS } from '../config/gateway-file';

/**
 * A model's prices as integers: pico-USD (1e-12 USD) per token. One USD per million tokens is exactly
 * 1,000,000 pico-USD per token, and LiteLLM's USD-per-token floats become integers after × 1e12, so every
 * cost below is integer arithmetic (BigInt), never a float sum. Models billed in other units (audio
 * seconds, speech characters, images) have a pico-USD price per unit instead of, or next to, the token
 * prices; `null` means the model has no price in that unit.
 */
export interface ModelPrice {
  /** Token prices are known (false: a model priced per second, character or image only; its token prices are 0). */
  tokens: boolean;
  inputPico: bigint;
  outputPico: bigint;
  /** Prompt tokens served from the provider's prompt cache; the input price when not set. */
  cachedInputPico: bigint;
  /** Prompt tokens written to the provider's prompt cache (Anthropic's cache writes); the input price when not set. */
  cacheWriteInputPico: bigint;
  /** A second of audio sent in (transcriptions, translations). */
  perSecondPico: bigint | null;
  /** A character of text sent in to be spoken (speech). */
  perCharacterPico: bigint | null;
  /** An image produced. */
  perImagePico: bigint | null;
  /** The most output tokens one response (one choice) of the model can have; null when not known. */
  maxOutputTokens: number | null;
}

/** Units other than tokens that a response is billed in. */
export type BilledUnit = 'seconds' | 'characters' | 'images';

/** What one request used: tokens, and for models billed otherwise, seconds, characters or images. */
export interface UsageCounts {
  promptTokens: number;
  completionTokens: number;
  /** Part of promptTokens read from the prompt cache. */
  cachedTokens: number;
  /** Part of promptTokens written to the prompt cache (Anthropic). */
  cacheWriteTokens?: number;
  /** Seconds of audio in (fractions kept to the millisecond). */
  seconds?: number;
  /** Characters of speech input. */
  characters?: number;
  /** Images produced. */
  images?: number;
}

const PICO_PER_MICRO = 1_000_000n;

/** The price a model has for a unit, or null. */
export function unitPrice(price: ModelPrice, unit: BilledUnit): bigint | null {
  return unit === 'seconds' ? price.perSecondPico : unit === 'characters' ? price.perCharacterPico : price.perImagePico;
}

/**
 * Cost in integer USD micros: Σ tokens × pico-price + Σ units × pico-price per unit (seconds to the
 * millisecond), rounded up to the next micro once per request (a request is never charged less than
 * its price; rounding is at most 1 micro). A unit the model has no price for costs nothing here: the
 * admission refuses such a model under a cost limit (COST_UNKNOWN_MODEL).
 */
export function costMicros(price: ModelPrice, usage: UsageCounts): number {
  const cachedCount = Math.min(usage.cachedTokens, usage.promptTokens);
  const writtenCount = Math.min(usage.cacheWriteTokens ?? 0, usage.promptTokens - cachedCount);
  const uncachedCount = usage.promptTokens - cachedCount - writtenCount;
  // Tokens only, and every product and their sum below 2^53: integers a double holds exactly, so the
  // same result without BigInt (the common case: two calls per governed request).
  if (!usage.seconds && !usage.characters && !usage.images) {
    const [input, cachedInput, cacheWrite, output, max] = tokenPrices(price);
    if ((usage.promptTokens + usage.completionTokens) * max <= Number.MAX_SAFE_INTEGER) {
      const pico = uncachedCount * input + cachedCount * cachedInput + writtenCount * cacheWrite + usage.completionTokens * output;
      const rest = pico % PICO_PER_MICRO_NUMBER;
      return (pico - rest) / PICO_PER_MICRO_NUMBER + (rest > 0 ? 1 : 0);
    }
  }
  const cached = BigInt(cachedCount);
  const written = BigInt(writtenCount);
  const uncached = BigInt(uncachedCount);
  let pico = uncached * price.inputPico + cached * price.cachedInputPico + written * price.cacheWriteInputPico + BigInt(usage.completionTokens) * price.outputPico;
  if (usage.seconds && price.perSecondPico !== null) pico += (BigInt(Math.ceil(usage.seconds * 1000)) * price.perSecondPico + 999n) / 1000n;
  if (usage.characters && price.perCharacterPico !== null) pico += BigInt(usage.characters) * price.perCharacterPico;
  if (usage.images && price.perImagePico !== null) pico += BigInt(usage.images) * price.perImagePico;
  return Number((pico + PICO_PER_MICRO - 1n) / PICO_PER_MICRO);
}

const PICO_PER_MICRO_NUMBER = 1_000_000;
/** A price's token prices as numbers (input, cached input, cache write, output, the largest), computed once per price. */
const tokenPriceNumbers = new WeakMap<ModelPrice, [number, number, number, number, number]>();
function tokenPrices(price: ModelPrice): [number, number, number, number, number] {
  let numbers = tokenPriceNumbers.get(price);
  if (numbers === undefined) {
    const list = [price.inputPico, price.cachedInputPico, price.cacheWriteInputPico, price.outputPico].map(Number);
    numbers = [list[0], list[1], list[2], list[3], Math.max(...list)];
    tokenPriceNumbers.set(price, numbers);
  }
  return numbers;
}

/** The prices of every known model: `pricing` in gateway.json over `PRICING_FILE` (LiteLLM format). */
export class PricingTable {
  constructor(private readonly prices: ReadonlyMap<string, ModelPrice>) {}

  get size(): number {
    return this.prices.size;
  }

  /** Exact name first, then the name without a `provider/` prefix (`openai/gpt-4o` → `gpt-4o`). */
  /**
   * The price of a model: by its exact name, else without a `provider/` prefix, else without a dated
   * snapshot suffix (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`: responses name the snapshot that served
   * them).
   */
  lookup(model: string | null): ModelPrice | null {
    if (model === null) return null;
    const bare = model.slice(model.lastIndexOf('/') + 1);
    return this.prices.get(model) ?? this.prices.get(bare) ?? this.prices.get(bare.replace(SNAPSHOT_SUFFIX, '')) ?? null;
  }
}

/** A dated snapshot's suffix: `-2024-07-18`. */
const SNAPSHOT_SUFFIX = /-\d{4}-\d{2}-\d{2}$/;

/** USD per million tokens (gateway.json) → pico-USD per token. */
const fromPerMillion = (usd: number): bigint => BigInt(Math.round(usd * 1e6));
/** USD per token or per unit (LiteLLM's names) → pico-USD. */
const fromUsd = (usd: number): bigint => BigInt(Math.round(usd * 1e12));

/** USD per token at most: MAX_PRICE_PER_MTOK_USD, as in gateway.json (so that a request's cost stays an exact integer). */
const MAX_PRICE_PER_TOKEN_USD = MAX_PRICE_PER_MTOK_USD / 1e6;
const within = (max: number) => (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max;
const isTokenPrice = within(MAX_PRICE_PER_TOKEN_USD);
const isUnitPrice = within(MAX_PRICE_PER_UNIT_USD);

/**
 * The per-unit prices, by LiteLLM's names (gateway.json takes the same names): audio seconds in at
 * `input_cost_per_second` (`output_cost_per_second` when only that one is set: LiteLLM's whisper-1
 * entry carries both, equal), speech characters at `input_cost_per_character`, images at
 * `output_cost_per_image` (else `input_cost_per_image`).
 */
type UnitPriceFields = Partial<Record<(typeof UNIT_PRICE_FIELDS)[number], number>>;

function unitPrices(e: UnitPriceFields): Pick<ModelPrice, 'perSecondPico' | 'perCharacterPico' | 'perImagePico'> {
  const pico = (...values: Array<number | undefined>) => {
    const value = values.find((v) => v !== undefined);
    return value === undefined ? null : fromUsd(value);
  };
  return {
    perSecondPico: pico(e.input_cost_per_second, e.output_cost_per_second),
    perCharacterPico: pico(e.input_cost_per_character),
    perImagePico: pico(e.output_cost_per_image, e.input_cost_per_image),
  };
}

/**
 * Builds the table. `PRICING_FILE` is LiteLLM's `model_prices_and_context_window.json`: an object of
 * model → `{input_cost_per_token, output_cost_per_token, cache_read_input_token_cost?,
 * cache_creation_input_token_cost?, max_output_tokens?,
 * input_cost_per_second?, input_cost_per_character?, output_cost_per_image?, …}` in USD per token or
 * unit; entries with no price the gateway reads (`sample_spec`, per-pixel image prices) are skipped.
 * Throws ConfigError naming the file and entry when it cannot be used.
 */
export function loadPricing(gatewayPricing: GatewayFile['pricing'], pricingFile: string | undefined): PricingTable {
  const prices = new Map<string, ModelPrice>();
  if (pricingFile !== undefined) {
    for (const [model, price] of readLiteLlmFile(pricingFile)) prices.set(model, price);
  }
  for (const [model, p] of Object.entries(gatewayPricing)) {
    const tokens = p.input_per_mtok_usd !== undefined;
    const input = tokens ? fromPerMillion(p.input_per_mtok_usd!) : 0n;
    prices.set(model, {
      tokens,
      inputPico: input,
      outputPico: tokens ? fromPerMillion(p.output_per_mtok_usd!) : 0n,
      cachedInputPico: p.cached_input_per_mtok_usd === undefined ? input : fromPerMillion(p.cached_input_per_mtok_usd),
      cacheWriteInputPico: p.cache_write_input_per_mtok_usd === undefined ? input : fromPerMillion(p.cache_write_input_per_mtok_usd),
      ...unitPrices(p),
      maxOutputTokens: p.max_output_tokens ?? null,
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
  const bad = (model: string, field: string, what: string) => problems.push(`PRICING_FILE: ${path.basename(resolved)}: ${model}.${field} must be ${what}`);
  for (const [model, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof entry !== 'object' || entry === null || model === 'sample_spec') continue;
    const e = entry as Record<string, unknown>;
    const tokens = e.input_cost_per_token !== undefined || e.output_cost_per_token !== undefined;
    const units = UNIT_PRICE_FIELDS.filter((f) => e[f] !== undefined);
    if (!tokens && units.length === 0) continue;
    // One token price without the other (embedding models have no output) counts the missing one as 0.
    const offending = ['input_cost_per_token', 'output_cost_per_token', 'cache_read_input_token_cost', 'cache_creation_input_token_cost'].find((f) => e[f] !== undefined && !isTokenPrice(e[f]));
    if (offending !== undefined) {
      bad(model, offending, `a number from 0 to ${MAX_PRICE_PER_TOKEN_USD} (USD per token)`);
      continue;
    }
    const offendingUnit = units.find((f) => !isUnitPrice(e[f]));
    if (offendingUnit !== undefined) {
      bad(model, offendingUnit, `a number from 0 to ${MAX_PRICE_PER_UNIT_USD} (USD per unit)`);
      continue;
    }
    // LiteLLM's `max_output_tokens` (not its legacy `max_tokens`, which is the context size for some
    // entries); anything but a positive integer is ignored.
    const max = e.max_output_tokens;
    const input = fromUsd((e.input_cost_per_token as number | undefined) ?? 0);
    prices.set(model, {
      tokens,
      inputPico: input,
      outputPico: fromUsd((e.output_cost_per_token as number | undefined) ?? 0),
      cachedInputPico: e.cache_read_input_token_cost !== undefined ? fromUsd(e.cache_read_input_token_cost as number) : input,
      cacheWriteInputPico: e.cache_creation_input_token_cost !== undefined ? fromUsd(e.cache_creation_input_token_cost as number) : input,
      ...unitPrices(e as UnitPriceFields),
      maxOutputTokens: typeof max === 'number' && Number.isSafeInteger(max) && max > 0 ? Math.min(max, MAX_REQUEST_TOKENS) : null,
    });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return prices;
}
