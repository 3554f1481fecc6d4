import type { BackendType } from '../config/gateway-file';
import type { Usage } from '../proxy/domain/usage';
import { JsonObject, isJsonObject } from './ingress';

/**
 * Where an API reports usage, for the relay's watchers (src/proxy/json-usage-finder.ts,
 * sse-usage-tap.ts) reading an answer as it streams by. OpenAI's is built into those watchers.
 */
export interface UsageDialect {
  /** Top-level members of a JSON answer that hold the usage (only their values are kept and parsed). */
  jsonKeys: ReadonlySet<string>;
  /** The usage of a whole JSON answer, from the values of `jsonKeys` found in it. */
  fromJson(values: ReadonlyMap<string, unknown>): Usage | null;
  /** A cheap test of an SSE event's text: may it carry usage? (only those are parsed) */
  sseUsage: RegExp;
  /** The usage known after one event (`previous`: what was known before it). */
  fromEvent(data: JsonObject, previous: Usage | null): Usage | null;
  /** The event that ends a complete stream; null when the stream simply ends. */
  sseDone: RegExp | null;
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0);

/** Anthropic's four counts; its `input_tokens` leaves out the tokens written to and read from the cache. */
function anthropicUsage(input: number, cacheWrite: number, cacheRead: number, output: number): Usage {
  const prompt = input + cacheWrite + cacheRead;
  return { promptTokens: prompt, completionTokens: output, cachedTokens: cacheRead, cacheWriteTokens: cacheWrite, totalTokens: prompt + output };
}

function anthropicFrom(u: unknown, previous: Usage | null): Usage | null {
  if (!isJsonObject(u)) return previous;
  const before = previous ?? anthropicUsage(0, 0, 0, 0);
  const cacheWrite = u.cache_creation_input_tokens !== undefined && u.cache_creation_input_tokens !== null ? count(u.cache_creation_input_tokens) : (before.cacheWriteTokens ?? 0);
  const cacheRead = u.cache_read_input_tokens !== undefined && u.cache_read_input_tokens !== null ? count(u.cache_read_input_tokens) : before.cachedTokens;
  const input = u.input_tokens !== undefined && u.input_tokens !== null ? count(u.input_tokens) : before.promptTokens - (before.cacheWriteTokens ?? 0) - before.cachedTokens;
  const output = u.output_tokens !== undefined && u.output_tokens !== null ? count(u.output_tokens) : before.completionTokens;
  return anthropicUsage(input, cacheWrite, cacheRead, output);
}

/**
 * Anthropic Messages: a JSON answer's `usage`; a stream's `message_start` (`message.usage`: input and
 * cache counts, a first output count) then `message_delta` (`usage`: the output so far, cumulative,
 * and any count it restates), ended by `message_stop`.
 */
const ANTHROPIC: UsageDialect = {
  jsonKeys: new Set(['usage']),
  fromJson: (values) => (isJsonObject(values.get('usage')) ? anthropicFrom(values.get('usage'), null) : null),
  sseUsage: /"usage"\s*:\s*\{/,
  fromEvent: (data, previous) => {
    if (data.type === 'message_start' && isJsonObject(data.message)) return anthropicFrom(data.message.usage, previous);
    if (data.type === 'message_delta') return anthropicFrom(data.usage, previous);
    return previous;
  },
  sseDone: /^event:\s*message_stop\s*$|"type"\s*:\s*"message_stop"/m,
};

/**
 * Gemini: `usageMetadata` of a JSON answer, or of each streamed chunk (each carries the totals so
 * far: the last one counts). Prompt = `promptTokenCount` (cached tokens included) +
 * `toolUsePromptTokenCount`; output = `candidatesTokenCount` + `thoughtsTokenCount` (thinking is billed
 * as output); cached = `cachedContentTokenCount`.
 */
export function geminiUsage(u: unknown): Usage | null {
  if (!isJsonObject(u)) return null;
  const prompt = count(u.promptTokenCount) + count(u.toolUsePromptTokenCount);
  const completion = count(u.candidatesTokenCount) + count(u.thoughtsTokenCount);
  const cached = Math.min(count(u.cachedContentTokenCount), prompt);
  return { promptTokens: prompt, completionTokens: completion, cachedTokens: cached, totalTokens: prompt + completion };
}

const GEMINI: UsageDialect = {
  jsonKeys: new Set(['usageMetadata']),
  fromJson: (values) => geminiUsage(values.get('usageMetadata')),
  sseUsage: /"usageMetadata"\s*:\s*\{/,
  fromEvent: (data, previous) => geminiUsage(data.usageMetadata) ?? previous,
  sseDone: null,
};

/** How a backend of `type` reports usage; null for OpenAI (the watchers' built-in reading). */
export function usageDialect(type: BackendType): UsageDialect | null {
  return type === 'anthropic' ? ANTHROPIC : type === 'gemini' ? GEMINI : null;
}
