import type { IncomingHttpHeaders } from 'node:http';
import { ErrorCode, GatewayError } from '../../common/errors/gateway-error';
import type { BackendConfig } from '../../config/gateway-file';
import { Ingress, JsonObject, ProtocolCall } from '../ingress';

/**
 * Anthropic's Messages API at `/v1/messages` and `/v1/messages/count_tokens` (docs/protocols.md).
 * The key comes in `x-api-key` (the Anthropic SDKs') or `Authorization: Bearer`; the body goes to an
 * `anthropic` backend byte for byte (but for the model map and strict mode's `max_tokens`).
 */
export const ANTHROPIC_INGRESS: Ingress = {
  protocol: 'anthropic',
  prefix: '/v1',
  call(target: string): ProtocolCall {
    const path = target.split('?')[0];
    if (path === '/messages') return messagesCall(target, false);
    if (path === '/messages/count_tokens') return messagesCall(target, true);
    throw new GatewayError(ErrorCode.NotFound, `the gateway serves Anthropic's POST /v1/messages and /v1/messages/count_tokens, not /v1${path}`);
  },
};

/** `x-api-key`, else `Authorization: Bearer`. */
export function anthropicKey(headers: IncomingHttpHeaders): string | undefined {
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey !== '') return apiKey;
  const authorization = headers.authorization;
  return typeof authorization === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] : undefined;
}

function invalid(message: string, param: string | null = null): GatewayError {
  return new GatewayError(ErrorCode.InvalidRequest, message, param);
}

/** The body's shape as far as governance reads it; the rest is the upstream's to judge. */
export function checkMessagesBody(json: JsonObject | null, counting: boolean): { model: string } {
  if (json === null) throw invalid('the body must be a JSON object');
  if (typeof json.model !== 'string' || json.model === '') throw invalid('model: a model name is required', 'model');
  if (!Array.isArray(json.messages)) throw invalid('messages: an array is required', 'messages');
  if (!counting) {
    const max = json.max_tokens;
    // Always present in this API: the gateway's reservation and strict cap rest on it.
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1) throw invalid('max_tokens: a positive integer is required', 'max_tokens');
  }
  return { model: json.model };
}

/** The Messages body as the budget stage meters it: OpenAI chat terms (system first, tools, max_tokens). */
export function meteredMessages(json: JsonObject): JsonObject {
  const messages = json.system === undefined ? (json.messages as unknown[]) : [{ role: 'system', content: json.system }, ...(json.messages as unknown[])];
  return { model: json.model, messages, ...(json.tools !== undefined ? { tools: json.tools } : {}), max_tokens: json.max_tokens };
}

function messagesCall(target: string, counting: boolean): ProtocolCall {
  return {
    protocol: 'anthropic',
    methods: ['POST'],
    presentedKey: anthropicKey,
    model: (json) => checkMessagesBody(json, counting).model,
    stream: (json) => !counting && json?.stream === true,
    // count_tokens bills nothing: metered as OpenAI's own token count (`/responses/input_tokens`).
    metered: (json) => (counting ? { path: '/responses/input_tokens', body: json } : { path: '/chat/completions', body: meteredMessages(json!) }),
    outputLimit: counting ? null : { member: 'max_tokens' },
    reaches: (backend: BackendConfig) => backend.type === 'anthropic',
    upstreamTarget: () => target,
  };
}
