import { randomUUID } from 'node:crypto';
import { ErrorCode, GatewayError } from '../../common/errors/gateway-error';
import type { BackendConfig } from '../../config/gateway-file';
import { errorBody } from '../errors';
import { JsonObject, isJsonObject } from '../ingress';
import { AnswerTranslator, Translation, eventData } from './translation';

/**
 * Anthropic Messages served by an `openai` backend (docs/protocols.md, "Translation"), so that Claude
 * Code and the Anthropic SDKs can use any OpenAI-compatible model: the Messages request becomes a chat
 * completion request (streamed with `include_usage`), the completion (or its chunks) becomes a message
 * (or its event stream), usage included.
 */

/** Messages fields a chat completion can take. `cache_control` hints (anywhere) are accepted and have no equivalent: OpenAI caches prompts by itself. */
const SUPPORTED = new Set(['model', 'messages', 'system', 'max_tokens', 'temperature', 'top_p', 'stop_sequences', 'stream', 'tools', 'tool_choice', 'metadata']);
const BLOCKS = new Set(['text', 'image', 'tool_use', 'tool_result']);
/** Reasoning models take max_completion_tokens on chat completions. */
const COMPLETION_TOKENS_MODELS = /^(o\d|gpt-5)/;

const STOP: Record<string, string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', function_call: 'tool_use', content_filter: 'refusal' };

function invalid(message: string, param: string | null = null): GatewayError {
  return new GatewayError(ErrorCode.InvalidRequest, message, param);
}

function check(json: JsonObject): void {
  const unsupported = Object.keys(json).filter((name) => json[name] !== undefined && json[name] !== null && !SUPPORTED.has(name));
  const thinking = json.thinking;
  if (isJsonObject(thinking) && thinking.type === 'disabled') unsupported.splice(unsupported.indexOf('thinking'), 1);
  if (isJsonObject(json.metadata) && Object.keys(json.metadata).some((k) => k !== 'user_id')) unsupported.push('metadata (other than user_id)');
  if (unsupported.length > 0) throw invalid(`not supported for a model served by an OpenAI backend: ${unsupported.join(', ')}`, unsupported[0].split(' ')[0]);
  (json.messages as unknown[]).forEach((message, i) => {
    if (!isJsonObject(message) || (message.role !== 'user' && message.role !== 'assistant')) throw invalid(`messages[${i}]: role must be user or assistant`, `messages[${i}].role`);
    if (Array.isArray(message.content)) {
      message.content.forEach((block, j) => {
        if (!isJsonObject(block) || !BLOCKS.has(String(block.type))) {
          throw invalid(`messages[${i}].content[${j}]: ${isJsonObject(block) ? String(block.type) : 'this'} blocks are not supported for a model served by an OpenAI backend`, `messages[${i}].content[${j}]`);
        }
      });
    } else if (typeof message.content !== 'string') throw invalid(`messages[${i}].content: a string or an array of blocks is required`, `messages[${i}].content`);
  });
  if (Array.isArray(json.tools)) {
    json.tools.forEach((tool, i) => {
      if (!isJsonObject(tool) || (tool.type !== undefined && tool.type !== 'custom') || typeof tool.name !== 'string') {
        throw invalid(`tools[${i}]: only custom tools (name, description, input_schema) are supported for a model served by an OpenAI backend`, `tools[${i}]`);
      }
    });
  }
}

/** Text of a string or text blocks. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((b) => (isJsonObject(b) && b.type === 'text' ? String(b.text) : '')).join('');
}

function imagePart(block: JsonObject): JsonObject {
  const source = isJsonObject(block.source) ? block.source : {};
  const url = source.type === 'base64' ? `data:${String(source.media_type)};base64,${String(source.data)}` : String(source.url ?? '');
  return { type: 'image_url', image_url: { url } };
}

/** One Messages turn as chat messages: tool results become `tool` messages (before the rest of the user's turn). */
function chatMessages(message: JsonObject): JsonObject[] {
  if (typeof message.content === 'string') return [{ role: message.role, content: message.content }];
  const blocks = message.content as JsonObject[];
  if (message.role === 'assistant') {
    const text = textOf(blocks);
    const calls = blocks.filter((b) => b.type === 'tool_use').map((b) => ({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } }));
    return [{ role: 'assistant', content: text === '' ? null : text, ...(calls.length > 0 ? { tool_calls: calls } : {}) }];
  }
  const out: JsonObject[] = blocks
    .filter((b) => b.type === 'tool_result')
    .map((b) => ({ role: 'tool', tool_call_id: b.tool_use_id, content: `${b.is_error === true ? 'Error: ' : ''}${textOf(b.content)}` }));
  const parts = blocks.filter((b) => b.type === 'text' || b.type === 'image').map((b) => (b.type === 'text' ? { type: 'text', text: b.text } : imagePart(b)));
  if (parts.length > 0) out.push({ role: 'user', content: parts });
  return out;
}

function toolChoice(choice: unknown): { tool_choice?: unknown; parallel_tool_calls?: boolean } {
  if (!isJsonObject(choice)) return {};
  const parallel = choice.disable_parallel_tool_use === true ? { parallel_tool_calls: false } : {};
  if (choice.type === 'auto') return { tool_choice: 'auto', ...parallel };
  if (choice.type === 'any') return { tool_choice: 'required', ...parallel };
  if (choice.type === 'none') return { tool_choice: 'none' };
  if (choice.type === 'tool') return { tool_choice: { type: 'function', function: { name: choice.name } }, ...parallel };
  return {};
}

function body(json: JsonObject, backend: BackendConfig, outputTokens: number): string {
  const model = String(json.model);
  const upstreamModel = backend.model_map[model] ?? model;
  const system = json.system === undefined ? [] : [{ role: 'system', content: textOf(json.system) }];
  const tools = Array.isArray(json.tools)
    ? json.tools.map((t: JsonObject) => ({ type: 'function', function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: t.input_schema ?? { type: 'object', properties: {} } } }))
    : undefined;
  const request: JsonObject = {
    model: upstreamModel,
    messages: [...system, ...(json.messages as JsonObject[]).flatMap(chatMessages)],
    [COMPLETION_TOKENS_MODELS.test(upstreamModel) ? 'max_completion_tokens' : 'max_tokens']: outputTokens,
    ...(json.temperature !== undefined ? { temperature: json.temperature } : {}),
    ...(json.top_p !== undefined ? { top_p: json.top_p } : {}),
    ...(Array.isArray(json.stop_sequences) ? { stop: json.stop_sequences } : {}),
    ...(tools ? { tools } : {}),
    ...toolChoice(json.tool_choice),
    ...(isJsonObject(json.metadata) && typeof json.metadata.user_id === 'string' ? { user: json.metadata.user_id } : {}),
    ...(json.stream === true ? { stream: true, stream_options: { include_usage: true } } : {}),
  };
  return JSON.stringify(request);
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

function messagesUsage(u: unknown): JsonObject {
  const usage = isJsonObject(u) ? u : {};
  const details = isJsonObject(usage.prompt_tokens_details) ? usage.prompt_tokens_details : {};
  const cached = Math.min(count(details.cached_tokens), count(usage.prompt_tokens));
  return { input_tokens: count(usage.prompt_tokens) - cached, cache_creation_input_tokens: 0, cache_read_input_tokens: cached, output_tokens: count(usage.completion_tokens) };
}

function toolInput(args: unknown): unknown {
  try {
    return JSON.parse(String(args ?? '{}'));
  } catch {
    return {};
  }
}

function message(completion: JsonObject): JsonObject {
  const choice = Array.isArray(completion.choices) && isJsonObject(completion.choices[0]) ? completion.choices[0] : {};
  const reply = isJsonObject(choice.message) ? choice.message : {};
  const content: JsonObject[] = [];
  if (typeof reply.content === 'string' && reply.content !== '') content.push({ type: 'text', text: reply.content });
  for (const call of Array.isArray(reply.tool_calls) ? (reply.tool_calls as JsonObject[]) : []) {
    const fn = isJsonObject(call.function) ? call.function : {};
    content.push({ type: 'tool_use', id: call.id, name: fn.name, input: toolInput(fn.arguments) });
  }
  return {
    id: `msg_${String(completion.id ?? randomUUID())}`,
    type: 'message',
    role: 'assistant',
    model: completion.model,
    content,
    stop_reason: STOP[String(choice.finish_reason)] ?? 'end_turn',
    stop_sequence: null,
    usage: messagesUsage(completion.usage),
  };
}

/** Chat completion chunks as the Messages event stream; message_delta and message_stop once `[DONE]` (and the usage chunk) came. */
class EventWriter implements AnswerTranslator {
  done = false;
  private started = false;
  /** The open content block: its index and kind (a tool call's OpenAI index for tool_use). */
  private open: { index: number; kind: 'text' | 'tool'; tool?: number } | null = null;
  private blocks = 0;
  private stopReason = 'end_turn';
  private usage: unknown = null;

  json = message;

  error(status: number, body: unknown): unknown {
    const error = isJsonObject(body) && isJsonObject(body.error) ? body.error : {};
    const message = typeof error.message === 'string' ? error.message : `the OpenAI backend answered ${status}`;
    return errorBody('anthropic', status, { error: { message, type: String(error.type ?? ''), code: String(error.code ?? error.type ?? ''), param: null } }, '');
  }

  event(text: string): string {
    if (/^data:\s*\[DONE\]\s*$/m.test(text)) return this.finish();
    const chunk = eventData(text);
    if (chunk === null) return '';
    if (isJsonObject(chunk.error)) return this.send('error', { error: { type: 'api_error', message: String(chunk.error.message ?? 'upstream error') } });
    let out = this.start(chunk);
    if (chunk.usage !== undefined && chunk.usage !== null) this.usage = chunk.usage;
    const choice = Array.isArray(chunk.choices) && isJsonObject(chunk.choices[0]) ? chunk.choices[0] : null;
    if (choice === null) return out;
    const delta = isJsonObject(choice.delta) ? choice.delta : {};
    if (typeof delta.content === 'string' && delta.content !== '') {
      if (this.open?.kind !== 'text') out += this.openBlock('text', { type: 'text', text: '' });
      out += this.send('content_block_delta', { index: this.open!.index, delta: { type: 'text_delta', text: delta.content } });
    }
    for (const call of Array.isArray(delta.tool_calls) ? (delta.tool_calls as JsonObject[]) : []) {
      const fn = isJsonObject(call.function) ? call.function : {};
      if (this.open?.kind !== 'tool' || this.open.tool !== call.index) {
        out += this.openBlock('tool', { type: 'tool_use', id: call.id, name: fn.name, input: {} }, Number(call.index));
      }
      if (typeof fn.arguments === 'string' && fn.arguments !== '') out += this.send('content_block_delta', { index: this.open!.index, delta: { type: 'input_json_delta', partial_json: fn.arguments } });
    }
    if (typeof choice.finish_reason === 'string') this.stopReason = STOP[choice.finish_reason] ?? 'end_turn';
    return out;
  }

  end(): string {
    return '';
  }

  private start(chunk: JsonObject): string {
    if (this.started) return '';
    this.started = true;
    const start = { id: `msg_${String(chunk.id ?? randomUUID())}`, type: 'message', role: 'assistant', model: chunk.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } };
    return this.send('message_start', { message: start });
  }

  private openBlock(kind: 'text' | 'tool', block: JsonObject, tool?: number): string {
    const closed = this.closeBlock();
    this.open = { index: this.blocks++, kind, tool };
    return closed + this.send('content_block_start', { index: this.open.index, content_block: block });
  }

  private closeBlock(): string {
    if (this.open === null) return '';
    const out = this.send('content_block_stop', { index: this.open.index });
    this.open = null;
    return out;
  }

  private finish(): string {
    if (this.done) return '';
    this.done = true;
    const out = this.start({}) + this.closeBlock();
    const usage = messagesUsage(this.usage);
    return out + this.send('message_delta', { delta: { stop_reason: this.stopReason, stop_sequence: null }, usage }) + this.send('message_stop', {});
  }

  private send(type: string, data: JsonObject): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  }
}

export const ANTHROPIC_TO_OPENAI: Translation = {
  check,
  target: () => '/chat/completions',
  body,
  answer: () => new EventWriter(),
};
