import type { IncomingHttpHeaders } from 'node:http';
import { ErrorCode, GatewayError } from '../../common/errors/gateway-error';
import type { BackendConfig } from '../../config/gateway-file';
import { Ingress, JsonObject, ProtocolCall, isJsonObject } from '../ingress';

const CALL = /^\/models\/([A-Za-z0-9][A-Za-z0-9._-]{0,127}):(generateContent|streamGenerateContent|countTokens)$/;
/** Most candidates one request may ask for (as OpenAI's `n`, docs/budgets.md). */
const MAX_CANDIDATES = 128;

/**
 * Google's Gemini API at `/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`
 * and `:countTokens` (docs/protocols.md). The key comes in `x-goog-api-key` (the Google Gen AI SDK's),
 * `?key=` or `Authorization: Bearer`; `?key=` never goes upstream. The model is the path's.
 */
export const GEMINI_INGRESS: Ingress = {
  protocol: 'gemini',
  prefix: '/v1beta',
  call(target: string): ProtocolCall {
    const at = target.indexOf('?');
    const path = at === -1 ? target : target.slice(0, at);
    const match = CALL.exec(path);
    if (!match) {
      throw new GatewayError(ErrorCode.NotFound, `the gateway serves Gemini's POST /v1beta/models/{model}:generateContent, :streamGenerateContent and :countTokens, not /v1beta${path}`);
    }
    const [, model, method] = match;
    const query = new URLSearchParams(at === -1 ? '' : target.slice(at + 1));
    return geminiCall(model, method, query);
  },
};

function invalid(message: string, param: string | null = null): GatewayError {
  return new GatewayError(ErrorCode.InvalidRequest, message, param);
}

/** What the query may hold: the key, and `alt` (`sse` for a stream, the only stream form whose usage the gateway reads). */
function forwardedQuery(method: string, query: URLSearchParams): string {
  const unknown = [...new Set([...query.keys()].filter((name) => name !== 'key' && name !== 'alt'))];
  if (unknown.length > 0) throw invalid(`unsupported query parameter(s): ${unknown.join(', ')}`);
  const alt = query.getAll('alt');
  if (method === 'streamGenerateContent') {
    if (alt.length !== 1 || alt[0] !== 'sse') throw invalid('streamGenerateContent is served as server-sent events only: add ?alt=sse', 'alt');
    return '?alt=sse';
  }
  if (alt.length > 1 || (alt.length === 1 && alt[0] !== 'json')) throw invalid(`alt=${alt.join(',')} is not supported on ${method}`, 'alt');
  return alt.length === 1 ? '?alt=json' : '';
}

/** `generationConfig.maxOutputTokens` and `candidateCount`, checked as the budget stage needs them. */
function generationLimits(json: JsonObject): { maxOutputTokens?: number; candidateCount?: number } {
  const config = json.generationConfig;
  if (config === undefined) return {};
  if (!isJsonObject(config)) throw invalid('generationConfig must be an object', 'generationConfig');
  const max = config.maxOutputTokens;
  if (max !== undefined && (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0)) {
    throw invalid('generationConfig.maxOutputTokens must be a non-negative integer', 'generationConfig.maxOutputTokens');
  }
  const candidates = config.candidateCount;
  if (candidates !== undefined && (typeof candidates !== 'number' || !Number.isSafeInteger(candidates) || candidates < 1 || candidates > MAX_CANDIDATES)) {
    throw invalid(`generationConfig.candidateCount must be an integer from 1 to ${MAX_CANDIDATES}`, 'generationConfig.candidateCount');
  }
  return { maxOutputTokens: max as number | undefined, candidateCount: candidates as number | undefined };
}

/** A generateContent body as the budget stage meters it: OpenAI chat terms (system first, each content's parts, tools). */
export function meteredContents(model: string, json: JsonObject): JsonObject {
  const contents = Array.isArray(json.contents) ? json.contents : [];
  const messages = contents.map((c) => (isJsonObject(c) ? { role: typeof c.role === 'string' ? c.role : 'user', content: c.parts ?? null } : c));
  if (json.systemInstruction !== undefined) messages.unshift({ role: 'system', content: isJsonObject(json.systemInstruction) ? (json.systemInstruction.parts ?? null) : json.systemInstruction });
  const { maxOutputTokens, candidateCount } = generationLimits(json);
  return {
    model,
    messages,
    ...(json.tools !== undefined ? { tools: json.tools } : {}),
    ...(maxOutputTokens !== undefined ? { max_tokens: maxOutputTokens } : {}),
    ...(candidateCount !== undefined ? { n: candidateCount } : {}),
  };
}

export function geminiKey(headers: IncomingHttpHeaders, query: URLSearchParams): string | undefined {
  const header = headers['x-goog-api-key'];
  if (typeof header === 'string' && header !== '') return header;
  const inQuery = query.get('key');
  if (inQuery) return inQuery;
  const authorization = headers.authorization;
  return typeof authorization === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] : undefined;
}

function geminiCall(model: string, method: string, query: URLSearchParams): ProtocolCall {
  const counting = method === 'countTokens';
  const forwarded = forwardedQuery(method, query);
  return {
    protocol: 'gemini',
    methods: ['POST'],
    presentedKey: (headers) => geminiKey(headers, query),
    model: (json) => {
      if (json === null) throw invalid('the body must be a JSON object');
      if (!counting) generationLimits(json);
      return model;
    },
    stream: () => method === 'streamGenerateContent',
    // countTokens bills nothing: metered as OpenAI's own token count (`/responses/input_tokens`).
    metered: (json) => (counting ? { path: '/responses/input_tokens', body: json } : { path: '/chat/completions', body: meteredContents(model, json!) }),
    outputLimit: counting ? null : { member: 'generationConfig', field: 'maxOutputTokens' },
    reaches: (backend: BackendConfig) => backend.type === 'gemini',
    upstreamTarget: (backend: BackendConfig) => `/models/${backend.model_map[model] ?? model}:${method}${forwarded}`,
  };
}
