import { randomUUID } from 'node:crypto';
import { ErrorCode, GatewayError } from '../../common/errors/gateway-error';
import type { BackendConfig } from '../../config/gateway-file';
import { JsonObject, isJsonObject } from '../ingress';
import { AnswerTranslator, Translation, eventData } from './translation';

/**
 * OpenAI chat completions served by an `anthropic` backend (docs/protocols.md, "Translation"): the
 * chat request becomes a Messages request, the message (or its event stream) becomes a chat completion
 * (or chunks), usage included.
 */

/** Chat fields the Messages API can take; anything else is refused, never dropped. */
const SUPPORTED = new Set(['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'stop', 'stream', 'stream_options', 'tools', 'tool_choice', 'parallel_tool_calls', 'user', 'n']);

const FINISH: Record<string, string> = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', tool_use: 'tool_calls', refusal: 'content_filter', pause_turn: 'stop' };

const OPENAI_ERROR_TYPES: Record<string, string> = {
  invalid_request_error: 'invalid_request_error',
  authentication_error: 'authentication_error',
  permission_error: 'permission_error',
  not_found_error: 'invalid_request_error',
  request_too_large: 'invalid_request_error',
  rate_limit_error: 'rate_limit_exceeded',
  billing_error: 'insufficient_quota',
  overloaded_error: 'server_error',
  api_error: 'server_error',
};

function invalid(message: string, param: string | null = null): GatewayError {
  return new GatewayError(ErrorCode.InvalidRequest, message, param);
}

const present = (json: JsonObject, name: string) => json[name] !== undefined && json[name] !== null;

function check(json: JsonObject): void {
  const unsupported = Object.keys(json).filter((name) => present(json, name) && !SUPPORTED.has(name));
  if (present(json, 'n') && json.n !== 1) unsupported.push('n (other than 1)');
  if (typeof json.temperature === 'number' && json.temperature > 1) unsupported.push('temperature above 1');
  if (unsupported.length > 0) {
    throw invalid(`not supported for a model served by an Anthropic backend: ${unsupported.join(', ')}`, unsupported[0].split(' ')[0]);
  }
  if (!Array.isArray(json.messages)) throw invalid('messages: an array is required', 'messages');
  json.messages.forEach((message, i) => {
    if (!isJsonObject(message) || !['system', 'developer', 'user', 'assistant', 'tool'].includes(String(message.role))) throw invalid(`messages[${i}]: unsupported message`, `messages[${i}]`);
    if (Array.isArray(message.content)) {
      for (const part of message.content) {
        if (!isJsonObject(part) || (part.type !== 'text' && part.type !== 'image_url')) throw invalid(`messages[${i}].content: only text and image_url parts are supported for an Anthropic backend`, `messages[${i}].content`);
      }
    }
  });
  if (Array.isArray(json.tools) && json.tools.some((t) => !isJsonObject(t) || t.type !== 'function')) throw invalid('tools: only function tools are supported for an Anthropic backend', 'tools');
}

/** Text of a system/developer/tool message's content (a string, or text parts). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((p) => (isJsonObject(p) && typeof p.text === 'string' ? p.text : '')).join('');
}

function imageBlock(url: string): JsonObject {
  const data = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  if (data) return { type: 'image', source: { type: 'base64', media_type: data[1], data: data[2] } };
  return { type: 'image', source: { type: 'url', url } };
}

function userBlocks(content: unknown): JsonObject[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content)) return [];
  return content.map((part: JsonObject) => (part.type === 'text' ? { type: 'text', text: part.text } : imageBlock(String((part.image_url as JsonObject | undefined)?.url ?? ''))));
}

function assistantBlocks(message: JsonObject, i: number): JsonObject[] {
  const blocks: JsonObject[] = [];
  const text = textOf(message.content);
  if (text !== '') blocks.push({ type: 'text', text });
  for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
    const fn = isJsonObject(call) && isJsonObject(call.function) ? call.function : null;
    let input: unknown;
    try {
      input = JSON.parse(String(fn?.arguments ?? '{}'));
    } catch {
      throw invalid(`messages[${i}].tool_calls: arguments must be JSON`, `messages[${i}].tool_calls`);
    }
    blocks.push({ type: 'tool_use', id: call.id, name: fn?.name, input });
  }
  return blocks;
}

/** The chat messages as Messages: system text apart, tool results as user turns, same-role turns merged. */
function messagesOf(chat: JsonObject[]): { system: string | null; messages: JsonObject[] } {
  const system: string[] = [];
  const turns: Array<{ role: string; content: JsonObject[] }> = [];
  const add = (role: string, content: JsonObject[]) => {
    const last = turns.at(-1);
    if (last?.role === role) last.content.push(...content);
    else turns.push({ role, content: [...content] });
  };
  chat.forEach((m, i) => {
    if (m.role === 'system' || m.role === 'developer') system.push(textOf(m.content));
    else if (m.role === 'user') add('user', userBlocks(m.content));
    else if (m.role === 'assistant') add('assistant', assistantBlocks(m, i));
    else if (m.role === 'tool') add('user', [{ type: 'tool_result', tool_use_id: m.tool_call_id, content: textOf(m.content) }]);
  });
  return { system: system.length > 0 ? system.join('\n\n') : null, messages: turns };
}

function toolChoice(choice: unknown, parallel: unknown): JsonObject | undefined {
  let mapped: JsonObject | undefined;
  if (choice === 'auto') mapped = { type: 'auto' };
  else if (choice === 'none') mapped = { type: 'none' };
  else if (choice === 'required') mapped = { type: 'any' };
  else if (isJsonObject(choice) && isJsonObject(choice.function)) mapped = { type: 'tool', name: choice.function.name };
  if (parallel === false) mapped = { ...(mapped ?? { type: 'auto' }), disable_parallel_tool_use: true };
  return mapped;
}

function body(json: JsonObject, backend: BackendConfig, outputTokens: number): string {
  const model = String(json.model);
  const { system, messages } = messagesOf(json.messages as JsonObject[]);
  const tools = Array.isArray(json.tools)
    ? json.tools.map((t: JsonObject) => {
        const fn = t.function as JsonObject;
        return { name: fn.name, ...(fn.description !== undefined ? { description: fn.description } : {}), input_schema: fn.parameters ?? { type: 'object', properties: {} } };
      })
    : undefined;
  const stop = typeof json.stop === 'string' ? [json.stop] : Array.isArray(json.stop) ? json.stop : undefined;
  const request: JsonObject = {
    model: backend.model_map[model] ?? model,
    max_tokens: outputTokens,
    ...(system !== null ? { system } : {}),
    messages,
    ...(present(json, 'temperature') ? { temperature: json.temperature } : {}),
    ...(present(json, 'top_p') ? { top_p: json.top_p } : {}),
    ...(stop ? { stop_sequences: stop } : {}),
    ...(tools ? { tools } : {}),
    ...(toolChoice(json.tool_choice, json.parallel_tool_calls) ? { tool_choice: toolChoice(json.tool_choice, json.parallel_tool_calls) } : {}),
    ...(typeof json.user === 'string' ? { metadata: { user_id: json.user } } : {}),
    ...(json.stream === true ? { stream: true } : {}),
  };
  return JSON.stringify(request);
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

function chatUsage(u: JsonObject): JsonObject {
  const read = count(u.cache_read_input_tokens);
  const prompt = count(u.input_tokens) + count(u.cache_creation_input_tokens) + read;
  const completion = count(u.output_tokens);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: read } };
}

function completion(message: JsonObject): JsonObject {
  const blocks = Array.isArray(message.content) ? (message.content as JsonObject[]) : [];
  const text = blocks.filter((b) => b.type === 'text').map((b) => String(b.text)).join('');
  const calls = blocks.filter((b) => b.type === 'tool_use').map((b) => ({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } }));
  return {
    id: `chatcmpl-${String(message.id ?? randomUUID())}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: message.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text === '' && calls.length > 0 ? null : text, refusal: null, ...(calls.length > 0 ? { tool_calls: calls } : {}) },
        logprobs: null,
        finish_reason: FINISH[String(message.stop_reason)] ?? 'stop',
      },
    ],
    usage: chatUsage(isJsonObject(message.usage) ? message.usage : {}),
  };
}

/** The event stream of a message as chat completion chunks, `data: [DONE]` last. */
class ChunkWriter implements AnswerTranslator {
  done = false;
  private id = `chatcmpl-${randomUUID()}`;
  private model: unknown = null;
  private readonly created = Math.floor(Date.now() / 1000);
  private usage: JsonObject = {};
  /** Content block index → the tool call's index among the message's tool calls. */
  private readonly tools = new Map<number, number>();

  constructor(private readonly includeUsage: boolean) {}

  json = completion;

  error = openAiError;

  event(text: string): string {
    const data = eventData(text);
    if (data === null) return '';
    switch (data.type) {
      case 'message_start': {
        const message = isJsonObject(data.message) ? data.message : {};
        this.id = `chatcmpl-${String(message.id ?? randomUUID())}`;
        this.model = message.model;
        this.usage = { ...(isJsonObject(message.usage) ? message.usage : {}) };
        return this.chunk({ role: 'assistant', content: '' }, null);
      }
      case 'content_block_start': {
        const block = isJsonObject(data.content_block) ? data.content_block : {};
        if (block.type !== 'tool_use') return '';
        const index = this.tools.size;
        this.tools.set(Number(data.index), index);
        return this.chunk({ tool_calls: [{ index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] }, null);
      }
      case 'content_block_delta': {
        const delta = isJsonObject(data.delta) ? data.delta : {};
        if (delta.type === 'text_delta') return this.chunk({ content: delta.text }, null);
        if (delta.type === 'input_json_delta') return this.chunk({ tool_calls: [{ index: this.tools.get(Number(data.index)) ?? 0, function: { arguments: delta.partial_json } }] }, null);
        return '';
      }
      case 'message_delta': {
        if (isJsonObject(data.usage)) Object.assign(this.usage, Object.fromEntries(Object.entries(data.usage).filter(([, v]) => v !== null)));
        const delta = isJsonObject(data.delta) ? data.delta : {};
        return this.chunk({}, FINISH[String(delta.stop_reason)] ?? 'stop');
      }
      case 'message_stop': {
        this.done = true;
        const usage = this.includeUsage ? `data: ${JSON.stringify({ ...this.base(), choices: [], usage: chatUsage(this.usage) })}\n\n` : '';
        return `${usage}data: [DONE]\n\n`;
      }
      case 'error':
        return `data: ${JSON.stringify(openAiError(500, data))}\n\n`;
      default:
        return '';
    }
  }

  end(): string {
    return '';
  }

  private base(): JsonObject {
    return { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model };
  }

  private chunk(delta: JsonObject, finish: string | null): string {
    const chunk = { ...this.base(), choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...(this.includeUsage ? { usage: null } : {}) };
    return `data: ${JSON.stringify(chunk)}\n\n`;
  }
}

/** An Anthropic error body in OpenAI's shape. */
function openAiError(status: number, body: unknown): unknown {
  const error = isJsonObject(body) && isJsonObject(body.error) ? body.error : {};
  const kind = typeof error.type === 'string' ? error.type : status >= 500 ? 'api_error' : 'invalid_request_error';
  const message = typeof error.message === 'string' ? error.message : `the Anthropic backend answered ${status}`;
  return { error: { message, type: OPENAI_ERROR_TYPES[kind] ?? 'invalid_request_error', code: kind, param: null } };
}

export const OPENAI_TO_ANTHROPIC: Translation = {
  check,
  target: () => '/messages',
  body,
  answer: (json) => new ChunkWriter(isJsonObject(json.stream_options) && json.stream_options.include_usage === true),
};
