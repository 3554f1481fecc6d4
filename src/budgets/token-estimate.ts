import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/cjs/encoding/o200k_base';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MAX_REQUEST_TOKENS } from '../common/numeric-limits';

type Json = Record<string, unknown>;

/** The request field that bounds a response's length, per API. */
export type OutputField = 'max_tokens' | 'max_completion_tokens' | 'max_output_tokens';

/** Text beyond this many characters per request is counted by its bytes: BPE is fast on ordinary text
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

/**
 * A prompt's tokens, two ways (docs/budgets.md, "What is reserved"):
 * - `expected`: the count to expect — OpenAI's tokenizer for OpenAI-family models, else bytes/4;
 * - `ceiling`: the most any provider can count for it. Text no tokenizer here covers is counted at one
 *   token per UTF-8 byte: byte-level BPE (OpenAI, Anthropic, Llama 3) and SentencePiece with byte
 *   fallback (Gemini, Llama 2, Mistral) start from bytes and only merge them, so no text becomes more
 *   tokens than it has bytes. Text the tokenizer counts is the same on both sides.
 */
export interface PromptTokens {
  expected: number;
  ceiling: number;
}

/** The tokenizer for a model, by name (an `openai/`-style provider prefix is ignored); null = not OpenAI-family. */
function encodingFor(model: string | null): typeof o200k | null {
  const name = (model ?? '').slice((model ?? '').lastIndexOf('/') + 1).toLowerCase();
  if (O200K.test(name)) return o200k;
  if (CL100K.test(name)) return cl100k;
  return null;
}

/** Counts one request's prompt both ways, keeping a running character budget for the tokenizer. */
class Tally implements PromptTokens {
  expected = 0;
  ceiling = 0;
  private budget = TOKENIZED_CHARS_MAX;

  constructor(private readonly encoding: typeof o200k | null) {}

  /** Tokens both sides agree on (framing, images, token arrays). */
  add(tokens: number): void {
    this.expected += tokens;
    this.ceiling += tokens;
  }

  text(text: string): void {
    let at = 0;
    if (this.encoding !== null) {
      let tokens = 0;
      while (at < text.length && this.budget > 0) {
        let end = Math.min(text.length, at + PIECE_CHARS, at + this.budget);
        if (end < text.length) {
          const space = text.lastIndexOf(' ', end);
          if (space > at + PIECE_CHARS / 2) end = space;
        }
        tokens += this.encoding.countTokens(text.slice(at, end), noSpecial);
        this.budget -= end - at;
        at = end;
      }
      this.add(tokens);
    }
    if (at < text.length) {
      const bytes = Buffer.byteLength(at === 0 ? text : text.slice(at));
      this.expected += Math.ceil(bytes / 4);
      this.ceiling += bytes;
    }
  }
}

/** Text of a message `content`: a string, or parts with `text` (images counted flat). */
function countContent(content: unknown, tally: Tally): void {
  if (typeof content === 'string') return tally.text(content);
  if (!Array.isArray(content)) return content == null ? undefined : tally.text(jsonText(content));
  for (const part of content as Json[]) {
    if (typeof part === 'string') tally.text(part);
    else if (typeof part?.text === 'string') tally.text(part.text);
    else if (typeof part?.type === 'string' && /image/.test(part.type)) tally.add(TOKENS_PER_IMAGE);
    else if (part != null) tally.text(jsonText(part));
  }
}

/** Chat messages (and Responses API input items), in OpenAI's documented chat-format arithmetic. */
function countMessages(messages: unknown[], tally: Tally): void {
  tally.add(REPLY_PRIMING_TOKENS);
  for (const message of messages as Json[]) {
    if (typeof message !== 'object' || message === null) {
      tally.text(String(message));
      continue;
    }
    tally.add(TOKENS_PER_MESSAGE);
    if (typeof message.role === 'string') tally.text(message.role);
    countContent(message.content, tally);
    if (typeof message.name === 'string') {
      tally.add(TOKENS_PER_NAME);
      tally.text(message.name);
    }
    if (message.tool_calls !== undefined) tally.text(jsonText(message.tool_calls));
    if (message.function_call !== undefined) tally.text(jsonText(message.function_call));
    if (message.type !== undefined && message.role === undefined) tally.text(jsonText(message));
  }
}

/** `prompt` / `input` of completions and embeddings: a string, strings, or token arrays. */
function countInput(input: unknown, tally: Tally, depth = 0): void {
  if (typeof input === 'string') return tally.text(input);
  // Deeper than any API nests inputs: counted as JSON text (which refuses what is too deep to write).
  if (!Array.isArray(input) || depth >= MAX_INPUT_NESTING) return input == null ? undefined : tally.text(jsonText(input));
  if (input.every((v) => typeof v === 'number')) return tally.add(input.length);
  for (const item of input) countInput(item, tally, depth + 1);
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
 * Prompt tokens of an OpenAI API request body, expected and at most (docs/budgets.md): chat messages
 * (+ tools), the Responses API's `input` + `instructions`, completions' `prompt`, embeddings' `input`;
 * any other body as its JSON text.
 */
export function promptTokens(path: string, body: Json, model: string | null = typeof body.model === 'string' ? body.model : null): PromptTokens {
  const tally = new Tally(encodingFor(model));
  const chat = path === '/chat/completions' && Array.isArray(body.messages);
  if (chat || path === '/responses') {
    if (body.tools !== undefined) tally.text(jsonText(body.tools));
    if (body.functions !== undefined) tally.text(jsonText(body.functions));
  }
  if (chat) countMessages(body.messages as unknown[], tally);
  else if (path === '/responses') {
    if (typeof body.instructions === 'string') tally.text(body.instructions);
    if (Array.isArray(body.input)) countMessages(body.input, tally);
    else {
      countInput(body.input, tally);
      tally.add(REPLY_PRIMING_TOKENS);
    }
  } else if (path === '/completions') countInput(body.prompt, tally);
  else if (path === '/embeddings') countInput(body.input, tally);
  else tally.text(jsonText(body));
  return { expected: tally.expected, ceiling: tally.ceiling };
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

/** Plain text no tokenizer here counts (speech input), expected and at most. */
export function plainTextTokens(text: string): PromptTokens {
  const tally = new Tally(null);
  tally.text(text);
  return { expected: tally.expected, ceiling: tally.ceiling };
}

/** The prompt tokens to expect of a request body (`promptTokens(…).expected`). */
export const estimatePromptTokens = (path: string, body: Json, model?: string | null): number => promptTokens(path, body, model).expected;
