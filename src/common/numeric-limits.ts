import { Transform } from 'class-transformer';
import { ValidateBy, ValidationOptions } from 'class-validator';

/**
 * The largest numbers the admin API and gateway.json accept (docs/budgets.md, "Numbers"). Every numeric
 * input is a safe integer within its maximum, else 400 invalid_request (the admin API) or a
 * configuration error naming the field (gateway.json).
 */

/**
 * Largest token or USD-micro limit: 10^15 (a quadrillion tokens; USD 1 billion). A scope's
 * spent + reserved + amount, each at most about this, stays below 2^53: Redis computes it with Lua
 * numbers (doubles) and writes it back with %d, and JavaScript reads every backend's integers
 * (PostgreSQL bigint, MongoDB int64, Redis strings) as doubles, so every backend is exact.
 */
export const MAX_LIMIT = 1_000_000_000_000_000;

/**
 * Tokens one request is counted for at most, as an output limit it asks for (`max_tokens` and the
 * like) or as the usage an upstream reports: 10^9, far beyond any model, and small enough that
 * concurrent reservations on an unlimited scope stay exact too.
 */
export const MAX_REQUEST_TOKENS = 1_000_000_000;

/** Latest epoch-ms time accepted (`expires_at`): 13 digits, year 2286, the width of the Redis audit index. */
export const MAX_EPOCH_MS = 9_999_999_999_999;

/** Longest response cache TTL of a key, as for PROXY_CACHE_TTL_SECS: 30 days. */
export const MAX_CACHE_TTL_SECS = 30 * 86_400;

/** Longest age in seconds a request may name (`older_than_secs` of the reaper): 10 years. */
export const MAX_AGE_SECS = 10 * 365 * 86_400;

/** Largest price in gateway.json, USD per million tokens (USD 0.1 per token): costs stay exact integers. */
export const MAX_PRICE_PER_MTOK_USD = 100_000;

/**
 * Largest price of one unit that is not a token (a second of audio, a character of speech input, an
 * image): USD 100. With the units one request may be charged (MAX_REQUEST_UNITS) a request costs at
 * most USD 10^9 = 10^15 micros: an exact integer on every ledger, as token costs are.
 */
export const MAX_PRICE_PER_UNIT_USD = 100;

/** Seconds, characters or images one request is counted for at most (as MAX_REQUEST_TOKENS for tokens). */
export const MAX_REQUEST_UNITS = 10_000_000;

/** Largest backend timeout in gateway.json: what a Node timer can hold (about 24.8 days). */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/** Largest rpm/tpm accepted: keeps `limit × 60,000` (the sliding window, scaled) an exact integer in a double. */
export const MAX_RATE_LIMIT = 10_000_000_000;

/** Largest backend weight in gateway.json. */
export const MAX_WEIGHT = 1_000_000;

/**
 * A safe integer in [min, max], with one message naming the field (stacked IsInt/Min/Max would report
 * a NaN or a string several times). Takes JSON numbers only: "10" and 1e300 are refused alike.
 */
export function IsIntegerIn(min: number, max: number, options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isIntegerIn',
      validator: {
        validate: (v: unknown) => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max,
        defaultMessage: (args) => `${args?.property} must be an integer from ${min} to ${max}`,
      },
    },
    options,
  );
}

/**
 * A query-string integer: digits only (no sign, exponent, hex, blank or repeat), else NaN so that
 * IsIntegerIn refuses it. `1e3` or `0x10` would otherwise become 1000 and 16 through Number().
 */
export function QueryInteger(): PropertyDecorator {
  return Transform(({ value }) => (typeof value === 'string' && /^-?\d{1,17}$/.test(value) ? Number(value) : NaN));
}
