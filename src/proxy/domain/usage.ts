/**
 * Usage reported by an upstream, normalised across the OpenAI APIs: tokens, or for models billed in
 * another unit (whisper-1's audio seconds, speech characters, dall-e images) that unit, with the token
 * counts 0 (docs/budgets.md, "Units").
 */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the provider's prompt cache (priced at the cached-input rate). */
  cachedTokens: number;
  /** Prompt tokens written to the provider's prompt cache (Anthropic's cache_creation_input_tokens, priced at the cache-write rate). */
  cacheWriteTokens?: number;
  totalTokens: number;
  /** Seconds of audio in (fractions kept). */
  seconds?: number;
  /** Characters of speech input. */
  characters?: number;
  /** Images produced. */
  images?: number;
}

const int = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0);
/** A duration in seconds, to the millisecond; null when it is not a finite non-negative number. */
const seconds = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.ceil(v * 1000) / 1000 : null);

/** Usage of a model billed in a unit other than tokens. */
export function unitUsage(unit: 'seconds' | 'characters' | 'images', quantity: number): Usage {
  return { promptTokens: 0, completionTokens: 0, cachedTokens: 0, totalTokens: 0, [unit]: quantity };
}

/**
 * Reads `usage` from a response body or stream event: chat/completions/embeddings
 * (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`), the Responses API,
 * images (gpt-image-1) and token-billed transcriptions (`input_tokens`, `output_tokens`,
 * `input_tokens_details.cached_tokens`), the Responses API's streamed `response.completed` event
 * (`response.usage`), the Realtime API's `response.done` event (`response.usage`, cached tokens in
 * `input_token_details`); whisper-1's `usage: {type: "duration", seconds}`, or a verbose_json
 * transcript's top-level `duration` when it carries no usage. Null when there is none.
 */
export function usageFrom(body: unknown): Usage | null {
  if (typeof body !== 'object' || body === null) return null;
  const record = body as Record<string, any>;
  const usage = record.usage ?? record.response?.usage;
  if (typeof usage !== 'object' || usage === null) {
    const duration = seconds(record.duration);
    return duration === null ? null : unitUsage('seconds', duration);
  }
  if (usage.type === 'duration') {
    const duration = seconds(usage.seconds);
    return duration === null ? null : unitUsage('seconds', duration);
  }
  const prompt = int(usage.prompt_tokens ?? usage.input_tokens);
  const completion = int(usage.completion_tokens ?? usage.output_tokens);
  const cached = int(usage.prompt_tokens_details?.cached_tokens ?? usage.input_tokens_details?.cached_tokens ?? usage.input_token_details?.cached_tokens);
  const total = int(usage.total_tokens) || prompt + completion;
  return { promptTokens: prompt, completionTokens: completion, cachedTokens: Math.min(cached, prompt), totalTokens: total };
}

/** What names a Responses API object in an answer: its id, status and model, when present. */
export interface ResponseObject {
  id?: string;
  status?: string;
  model?: string;
}
