/** Token usage reported by an upstream, normalised across the OpenAI APIs. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the provider's prompt cache (priced at the cached-input rate). */
  cachedTokens: number;
  totalTokens: number;
}

const int = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0);

/**
 * Reads `usage` from a response body or stream event: chat/completions/embeddings
 * (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`), the Responses API
 * (`input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`), and its streamed
 * `response.completed` event (`response.usage`), and the Realtime API's `response.done` event
 * (`response.usage`, cached tokens in `input_token_details`). Null when there is none.
 */
export function usageFrom(body: unknown): Usage | null {
  if (typeof body !== 'object' || body === null) return null;
  const record = body as Record<string, any>;
  const usage = record.usage ?? record.response?.usage;
  if (typeof usage !== 'object' || usage === null) return null;
  const prompt = int(usage.prompt_tokens ?? usage.input_tokens);
  const completion = int(usage.completion_tokens ?? usage.output_tokens);
  const cached = int(usage.prompt_tokens_details?.cached_tokens ?? usage.input_tokens_details?.cached_tokens ?? usage.input_token_details?.cached_tokens);
  const total = int(usage.total_tokens) || prompt + completion;
  return { promptTokens: prompt, completionTokens: completion, cachedTokens: Math.min(cached, prompt), totalTokens: total };
}
