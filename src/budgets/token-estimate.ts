import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/cjs/encoding/o200k_base';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MAX_REQUEST_TOKENS } from '../common/numeric-limits';

type Json = Record<string, unknown>;
type Counter = (text: string) => number;

/** The request field that bounds a response's length, per API. */
export type OutputField = 'max_tokens' | 'max_completion_tokens' | 'max_output_tokens';

/** Text beyond this many characters per request is counted as bytes/4: BPE is fast on ordinary text
 * but superlinear on long runs without spaces, and the request path must stay bounded. */
const TOKENIZED_CHARS_MAX = 64 * 1024;
/** Texts are tokenized in pieces of about this size, cut at a space where there is one. */
const PIECE_CHARS = 1024;
/** OpenAI's chat format: tokens around each message, and priming the reply. */
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING_TOKENS = 3;
/** A rough flat count for an image part (OpenAI's low-detail price). */
const TOKENS_PER_IMAGE = 85;

const noSpecial = { disallowedSpecial: new Set<string>() };
const O200K = /^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|chatgpt-|o\d|codex-|omni-)/;
const CL100K = /^(gpt-4|gpt-3\.5|gpt-35|text-embedding-|davinci-002|babbage-002)/;

/** bytes/4, rounded up: the fallback estimate for text the tokenizer does not cover. */
export const byteEstimate = (text: string): number => Math.ceil(Buffer.byteLength(text) / 4);

/** The tokenizer for a model, by name (an `openai/`-style provider prefix is ignored); null = not OpenAI-family. */
function encodingFor(model: string | null): typeof o200k | null {
  const name = (model ?? '').slice((model ?? '').lastIndexOf('/') + 1).toLowerCase();
  if (O200K.test(name)) return o200k;
  if (CL100K.test(name)) return cl100k;
  return null;
}

/** Counts tokens for one request, keeping a running character budget for the tokenizer. */
function counterFor(model: string | null): Counter {
  const encoding = encodingFor(model);
  if (encoding === null) return byteEstimate;
  let budget = TOKENIZED_CHARS_MAX;
  return (text) => {
    let tokens = 0;
    let at = 0;
    while (at < text.length && budget > 0) {
      let end = Math.min(text.length, at + PIECE_CHARS, at + budget);
      if (end < text.length) {
        const space = text.lastIndexOf(' ', end);
        if (space > at + PIECE_CHARS / 2) end = space;
      }
      tokens += encoding.countTokens(text.slice(at, end), noSpecial);
      budget -= end - at;
      at = end;
    }
    return tokens + (at < text.length ? byteEstimate(text.slice(at)) : 0);
  };
}

/** Text of a message `content`: a string, or parts with `text` (images counted flat). */
function contentTokens(content: unknown, count: Counter): number {
  if (typeof content === 'string') return count(content);
  if (!Array.isArray(content)) return content == null ? 0 : count(jsonText(content));
  let tokens = 0;
  for (const part of content as Json[]) {
    if (typeof part === 'string') tokens += count(part);
    else if (typeof part?.text === 'string') tokens += count(part.text);
    else if (typeof part?.type === 'string' && /image/.test(part.type)) tokens += TOKENS_PER_IMAGE;
    else if (part != null) tokens += count(jsonText(part));
  }
  return tokens;
}

/** Chat messages (and Responses API input items), in OpenAI's documented chat-format arithmetic. */
function messagesTokens(messages: unknown[], count: Counter): number {
  let tokens = REPLY_PRIMING_TOKENS;
  for (const message of messages as Json[]) {
    if (typeof message !== 'object' || message === null) {
      tokens += count(String(message));
      continue;
    }
    tokens += TOKENS_PER_MESSAGE;
    if (typeof message.role === 'string') tokens += count(message.role);
    tokens += contentTokens(message.content, count);
    if (typeof message.name === 'string') tokens += TOKENS_PER_NAME + count(message.name);
    if (message.tool_calls !== undefined) tokens += count(jsonText(message.tool_calls));
    if (message.function_call !== undefined) tokens += count(jsonText(message.function_call));
    if (message.type !== undefined && message.role === undefined) tokens += count(jsonText(message));
  }
  return tokens;
}

/** `prompt` / `input` of completions and embeddings: a string, strings, or token arrays. */
function inputTokens(input: unknown, count: Counter, depth = 0): number {
  if (typeof input === 'string') return count(input);
  // Deeper than any API nests inputs: counted as JSON text (which refuses what is too deep to write).
  if (!Array.isArray(input) || depth >= MAX_INPUT_NESTING) return input == null ? 0 : count(jsonText(input));
  if (input.every((v) => typeof v === 'number')) return input.length;
  return input.reduce<number>((sum, item) => sum + inputTokens(item, count, depth + 1), 0);
}

/** Nesting of `prompt` / `input` arrays walked item by item (the APIs nest two levels: batches of token arrays). */
const MAX_INPUT_NESTING = 8;

/**
 * JSON text of a part of the body, to count it. A part nested too deeply for JSON.stringify (a body
 * parses at any depth; writing it back recurses) is refused as a bad request: the estimate cannot be
 * made, and a budget must not be reserved by guess.
 */
function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    throw new GatewayError(ErrorCode.InvalidRequest, 'the request body is nested too deeply to be counted; flatten it');
  }
}

/**
 * Estimated prompt tokens of an OpenAI API request body (docs/budgets.md): chat messages (+ tools), the
 * Responses API's `input` + `instructions`, completions' `prompt`, embeddings' `input`; any other body
 * as bytes/4 of its JSON.
 */
export function estimatePromptTokens(path: string, body: Json, model: string | null = typeof body.model === 'string' ? body.model : null): number {
  const count = counterFor(model);
  const tools = (body.tools !== undefined ? count(jsonText(body.tools)) : 0) + (body.functions !== undefined ? count(jsonText(body.functions)) : 0);
  if (path === '/chat/completions' && Array.isArray(body.messages)) return messagesTokens(body.messages, count) + tools;
  if (path === '/responses') {
    const instructions = typeof body.instructions === 'string' ? count(body.instructions) : 0;
    const input = Array.isArray(body.input) ? messagesTokens(body.input, count) : inputTokens(body.input, count) + REPLY_PRIMING_TOKENS;
    return input + instructions + tools;
  }
  if (path === '/completions') return inputTokens(body.prompt, count);
  if (path === '/embeddings') return inputTokens(body.input, count);
  return byteEstimate(jsonText(body));
}

/** Every field an upstream may read as the response's output limit, whichever API the path is. */
export const OUTPUT_FIELDS: readonly OutputField[] = ['max_output_tokens', 'max_completion_tokens', 'max_tokens'];

/**
 * The output limit a request set: the largest of every output-limit field it carries (an upstream may
 * honour any one of them), with the field that holds it; null when it sets none. A field that is
 * present but not a non-negative safe integer (`"100"`, `1.5`, `1e300`) is refused (400): an upstream
 * could read it its own way. A limit above MAX_REQUEST_TOKENS counts as MAX_REQUEST_TOKENS: asking for
 * more than any model produces reserves the most a request may reserve, never a number the ledgers
 * cannot add exactly.
 */
export function requestedOutput(body: Json): { field: OutputField; tokens: number } | null {
  let largest: { field: OutputField; tokens: number } | null = null;
  for (const field of OUTPUT_FIELDS) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new GatewayError(ErrorCode.InvalidRequest, `${field} must be a non-negative integer`, field);
    }
    const tokens = Math.min(value, MAX_REQUEST_TOKENS);
    if (largest === null || tokens > largest.tokens) largest = { field, tokens };
  }
  return largest;
}
