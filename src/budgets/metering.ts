import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MAX_REQUEST_TOKENS, MAX_REQUEST_UNITS } from '../common/numeric-limits';
import { BilledUnit, ModelPrice, costMicros, unitPrice } from '../costs/pricing';
import { OutputField, PromptTokens, plainTextTokens, promptTokens, requestedOutput } from './token-estimate';

type Json = Record<string, unknown>;

/**
 * What a request is billed for, by endpoint family (docs/budgets.md, "What is charged"):
 * - `generate`: chat completions, completions, Responses: tokens in and out;
 * - `embed`: embeddings: prompt tokens;
 * - `images`: images (generations, edits, variations): dall-e per image, gpt-image-1 in tokens;
 * - `speech`: characters of `input` (tts-1), or tokens for a model priced per token;
 * - `audio-in`: transcriptions and translations: whisper-1 in seconds of audio, gpt-4o-transcribe in tokens;
 * - `none`: nothing to bill (files, uploads, batches, cancels, moderations, listings, reads, deletes):
 *   neither reserved nor charged.
 * A POST to a path this table does not know is metered as `generate` (bytes/4 and the default output):
 * the strictest case, never waved through.
 */
export type Meter = 'generate' | 'embed' | 'images' | 'speech' | 'audio-in' | 'none';

const METER_BY_PATH: Record<string, Meter> = {
  '/chat/completions': 'generate',
  '/completions': 'generate',
  '/responses': 'generate',
  '/embeddings': 'embed',
  '/images/generations': 'images',
  '/images/edits': 'images',
  '/images/variations': 'images',
  '/audio/speech': 'speech',
  '/audio/transcriptions': 'audio-in',
  '/audio/translations': 'audio-in',
  '/moderations': 'none',
  '/files': 'none',
  '/uploads': 'none',
  '/batches': 'none',
  '/responses/input_tokens': 'none',
};
/** POSTs on an object that bill nothing: cancels, upload parts and completion, stored-completion updates, container files. */
const UNBILLED_POST = /^\/(?:(?:responses|batches)\/[^/]+\/cancel|uploads\/[^/]+\/(?:parts|complete|cancel)|chat\/completions\/[^/]+|containers\/[^/]+\/files)$/;

export function meterOf(method: string, path: string): Meter {
  if (method !== 'POST') return 'none';
  return METER_BY_PATH[path] ?? (UNBILLED_POST.test(path) ? 'none' : 'generate');
}

/** Output tokens of a response asked with `n` / `best_of` choices: at most this many choices are counted. */
export const MAX_CHOICES = 128;
/**
 * Audio is assumed to be at least this dense when a transcription is reserved before its length is
 * known: 16 kbit/s, below what speech codecs are used at, so the bound holds for real uploads.
 */
const AUDIO_BYTES_PER_SECOND = 2000;
/** Audio tokens per second of input for token-billed transcription models (OpenAI's ~1,000 per minute, rounded up). */
const AUDIO_TOKENS_PER_SECOND = 17;

/** Everything an estimate needs besides the request. */
export interface MeterContext {
  /** The model's prices, null when unpriced. */
  price: ModelPrice | null;
  /** BUDGET_DEFAULT_OUTPUT_TOKENS: output per choice when neither the request nor the pricing table bounds it. */
  defaultOutputTokens: number;
  /** The size of an upload (multipart) body, for audio: its content-length, else UPLOAD_LIMIT_BYTES. */
  uploadBytes: number;
}

/** What one request is reserved for: the most it may be charged. */
export interface Estimate {
  meter: Meter;
  /** The most the prompt can count (its ceiling): what is reserved for it. */
  promptTokens: number;
  /** The prompt tokens to expect (what a tpm rate limit counts at admission). */
  expectedPromptTokens: number;
  /** Choices the response may hold (`n`, or `best_of` when larger); 1 when not asked. */
  choices: number;
  /** Output tokens per choice in force (the request's limit, the model's maximum, or the default); 0 when none are produced. */
  perChoice: number;
  /** The output-limit field the request set itself, null when it set none. */
  outputField: OutputField | null;
  /** The unit other than tokens the request is reserved in, with its quantity (seconds, characters, images). */
  units: { unit: BilledUnit; quantity: number; exact: boolean } | null;
}

export const outputTokensOf = (e: Estimate): number => Math.min(e.choices * e.perChoice, MAX_REQUEST_TOKENS);
/** The tokens reserved for a request: the most it may be charged. */
export const tokensOf = (e: Estimate): number => e.promptTokens + outputTokensOf(e);
/** The tokens to expect of a request, its output at the limit in force. */
export const expectedTokensOf = (e: Estimate): number => e.expectedPromptTokens + outputTokensOf(e);
/** An estimate's prompt part from a count of the prompt. */
const prompt = (counted: PromptTokens) => ({ promptTokens: counted.ceiling, expectedPromptTokens: counted.expected });
/** A prompt both sides count the same. */
const exactly = (tokens: number) => ({ promptTokens: tokens, expectedPromptTokens: tokens });

/** The estimate's cost in USD micros for a priced model, 0 otherwise. */
export function estimateCost(e: Estimate, price: ModelPrice | null): number {
  if (price === null) return 0;
  return costMicros(price, {
    promptTokens: e.promptTokens,
    completionTokens: outputTokensOf(e),
    cachedTokens: 0,
    ...(e.units ? { [e.units.unit]: e.units.quantity } : {}),
  });
}

/**
 * The unit a model is billed in for a meter, and whether its price covers that: a model priced per unit
 * is billed in that unit; otherwise in tokens. `priced` is false for a model with no price it can be
 * billed by (unpriced, or priced only in another unit).
 */
export function billing(meter: Meter, price: ModelPrice | null): { unit: BilledUnit | 'tokens'; priced: boolean } {
  const unit: BilledUnit | null = meter === 'images' ? 'images' : meter === 'speech' ? 'characters' : meter === 'audio-in' ? 'seconds' : null;
  if (unit !== null && price !== null && unitPrice(price, unit) !== null) return { unit, priced: true };
  if (unit !== null && (price === null || !price.tokens)) return { unit: meter === 'audio-in' ? 'tokens' : unit, priced: false };
  return { unit: 'tokens', priced: price !== null && price.tokens };
}

/**
 * The worst case of a request (docs/budgets.md, "What is reserved"): prompt tokens, plus per choice the
 * output limit in force — the request's own (`max_tokens` & co., the largest), else the model's
 * maximum output from the pricing table, else BUDGET_DEFAULT_OUTPUT_TOKENS, never more than the
 * model's maximum — times the choices (`n`, `best_of`); speech its characters; images `n` images;
 * transcriptions the longest audio the upload can hold. Throws 400 for an `n`, `best_of` or output
 * limit that is not a usable integer.
 */
export function estimate(meter: Meter, path: string, body: Json | null, context: MeterContext): Estimate {
  const json = body ?? {};
  const { price } = context;
  const modelMax = price?.maxOutputTokens ?? null;
  const base: Estimate = { meter, ...exactly(0), choices: 1, perChoice: 0, outputField: null, units: null };
  const { unit } = billing(meter, price);
  switch (meter) {
    case 'none':
      return base;
    case 'embed':
      return { ...base, ...prompt(promptTokens(path, json)) };
    case 'speech': {
      const characters = typeof json.input === 'string' ? Math.min([...json.input].length, MAX_REQUEST_UNITS) : 0;
      if (unit === 'characters') return { ...base, units: { unit, quantity: characters, exact: true } };
      return { ...base, ...prompt(plainTextTokens(String(json.input ?? ''))), perChoice: modelMax ?? context.defaultOutputTokens };
    }
    case 'images': {
      const images = choices(json, ['n']);
      if (unit === 'images') return { ...base, units: { unit, quantity: images, exact: false } };
      return { ...base, ...prompt(promptTokens(path, json)), choices: images, perChoice: modelMax ?? context.defaultOutputTokens };
    }
    case 'audio-in': {
      const seconds = Math.min(Math.ceil(context.uploadBytes / AUDIO_BYTES_PER_SECOND), MAX_REQUEST_UNITS);
      if (unit === 'seconds') return { ...base, units: { unit, quantity: seconds, exact: false } };
      return { ...base, ...exactly(Math.min(seconds * AUDIO_TOKENS_PER_SECOND, MAX_REQUEST_TOKENS)), perChoice: modelMax ?? context.defaultOutputTokens };
    }
    case 'generate': {
      const requested = requestedOutput(json);
      const cap = requested?.tokens ?? modelMax ?? context.defaultOutputTokens;
      return {
        ...base,
        ...prompt(promptTokens(path, json)),
        choices: choices(json, ['n', 'best_of']),
        perChoice: modelMax === null ? cap : Math.min(cap, modelMax),
        outputField: requested?.field ?? null,
      };
    }
  }
}

/** The most choices a request asks for among `fields`: each an integer from 1 to MAX_CHOICES when present (else 400). */
function choices(body: Json, fields: string[]): number {
  let most = 1;
  for (const field of fields) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_CHOICES) {
      throw new GatewayError(ErrorCode.InvalidRequest, `${field} must be an integer from 1 to ${MAX_CHOICES}`, field);
    }
    most = Math.max(most, value);
  }
  return most;
}
