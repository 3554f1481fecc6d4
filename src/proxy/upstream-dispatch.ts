import type { IncomingMessage } from 'node:http';
import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { Dispatcher } from 'undici';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { BackendConfig } from '../config/gateway-file';
import { backendKind } from '../protocols/backend-types';
import { Exchange, Headers } from './exchange';
import { MemberEdit, editJson } from './json-text';
import { proxyConfig } from './proxy.config';
import { ProxyBody, tooLarge } from './proxy-body';
import { UpstreamPools } from './upstream-pools';

type JsonObject = Record<string, unknown>;

/** Who is billed upstream: forwarded only to OpenAI backends with `pass_client_headers`. */
const BILLING_REQUEST_HEADERS = ['openai-organization', 'openai-project'];

/** The backend that answered, and its answer (status and headers in, body not read yet). */
export interface UpstreamAnswer {
  backend: BackendConfig;
  response: Dispatcher.ResponseData;
}

/**
 * The proxy's upstream stage: sends the request to the routed backends in order, moving on after a
 * connect error, a timeout or a retryable status (PROXY_RETRY_STATUSES) up to PROXY_MAX_ATTEMPTS
 * backends, and answers the first usable response. A streamed (upload) body can be sent once only.
 * All failed: 502 backend_error or 504 backend_timeout naming each attempt.
 */
@Injectable()
export class UpstreamDispatcher {
  constructor(
    private readonly pools: UpstreamPools,
    @Inject(proxyConfig.KEY) private readonly config: ConfigType<typeof proxyConfig>,
  ) {}

  /** Null when the client went away before an answer came. */
  async dispatch(
    exchange: Exchange,
    backends: BackendConfig[],
    /** Path and query after the backend's base path (another API's call may name it per backend: its model map). */
    target: string | ((backend: BackendConfig) => string),
    json: JsonObject | null,
    edits: ReadonlyMap<string, MemberEdit>,
    /** What the upstream may compress with: the client's own choice, or `identity` when the gateway rewrites the body. */
    acceptEncoding: string,
    /** The body for a backend that speaks another API than the client (src/protocols/translate); null: the client's. */
    translatedBody: (backend: BackendConfig) => string | null = () => null,
  ): Promise<UpstreamAnswer | null> {
    const { request, event, abort } = exchange;
    const upload = exchange.body.kind === 'stream' ? exchange.body : null;
    const attempts = upload ? 1 : Math.min(this.config.maxAttempts, backends.length);
    let timedOut = false;
    for (let i = 0; i < attempts; i++) {
      const backend = backends[i];
      const upstream = this.pools.for(backend);
      event.backend = backend.name;
      let response: Dispatcher.ResponseData;
      exchange.dispatched = true;
      exchange.upstreamStarted = performance.now();
      try {
        response = await upstream.pool.request({
          path: upstream.basePath + (typeof target === 'string' ? target : target(backend)),
          method: request.method as Dispatcher.HttpMethod,
          headers: upstreamHeaders(request, backend, event.requestId, exchange.body, acceptEncoding),
          body: upload?.stream ?? translatedBody(backend) ?? jsonPayload(exchange.body, json, edits, backend),
          signal: abort,
          // first_byte_timeout_ms: until the answer's headers; idle_timeout_ms: between body chunks.
          headersTimeout: backend.first_byte_timeout_ms,
          bodyTimeout: backend.idle_timeout_ms,
        });
      } catch (error) {
        if (event.aborted) return null;
        if (upload?.tooLarge()) throw tooLarge(upload.limit, true);
        // The upload itself failed (paused too long): the client's fault, not the backend's.
        if (error instanceof GatewayError) throw error;
        const outcome = describeFailure(error);
        timedOut = outcome === 'timeout';
        if (reachedUpstream(error)) exchange.lost = true;
        event.attempts.push({ backend: backend.name, outcome });
        continue;
      }
      if (this.config.retryStatuses.has(response.statusCode) && i < attempts - 1) {
        event.attempts.push({ backend: backend.name, outcome: `status ${response.statusCode}` });
        await response.body.dump().catch(() => undefined);
        continue;
      }
      return { backend, response };
    }
    const tried = event.attempts.map((a) => `${a.backend}: ${a.outcome}`).join('; ');
    throw timedOut
      ? new GatewayError(ErrorCode.BackendTimeout, `the upstream did not answer in time (${tried})`)
      : new GatewayError(ErrorCode.BackendError, `no backend could answer (${tried})`);
  }
}

/**
 * The JSON body to send upstream: the client's text, with the gateway's edits (output cap,
 * `include_usage`, the backend's `model_map`) made in place; null without a body.
 */
function jsonPayload(body: ProxyBody, json: JsonObject | null, edits: ReadonlyMap<string, MemberEdit>, backend: BackendConfig): string | null {
  if (body.kind !== 'json') return null;
  const mapped = typeof json?.model === 'string' ? backend.model_map[json.model] : undefined;
  if (body.members === null || (edits.size === 0 && mapped === undefined)) return body.text;
  if (mapped === undefined) return editJson(body.text, body.members, edits);
  return editJson(body.text, body.members, new Map([...edits, ['model', () => JSON.stringify(mapped)]]));
}

function upstreamHeaders(request: IncomingMessage, backend: BackendConfig, requestId: string, body: ProxyBody, acceptEncoding: string): Headers {
  // JSON bodies go upstream as JSON whatever the client called them; an upload keeps its multipart type
  // (and boundary) and its length: undici sends a stream body with a content-length as is, and fails
  // the request if the stream turns out longer or shorter.
  const headers = forwardedHeaders(request, backend, requestId, body.kind === 'json' ? 'application/json' : request.headers['content-type']);
  if (body.kind === 'stream' && body.length !== null) headers['content-length'] = String(body.length);
  headers['accept-encoding'] = acceptEncoding;
  return headers;
}

/**
 * The headers a request takes upstream (HTTP requests and realtime handshakes alike): the client
 * headers the backend's type allows (`openai-beta` to OpenAI, `anthropic-version` / `anthropic-beta`
 * to Anthropic, src/protocols/backend-types.ts); everything else stays at the gateway (credentials of
 * any spelling, cookies, hop-by-hop and proxy headers, anything unknown). Then the gateway's own:
 * `contentType`, the request id, the backend's key in its type's header, its configured headers.
 */
export function forwardedHeaders(request: IncomingMessage, backend: BackendConfig, requestId: string, contentType?: string): Headers {
  // One object written in order (later names override earlier ones): no spread copies per request.
  const headers: Headers = {};
  const kind = backendKind(backend);
  const auth = kind.auth(backend.api_key);
  // A default the client may override (the API version), then the client's allow-listed headers.
  if (auth['anthropic-version'] !== undefined) headers['anthropic-version'] = auth['anthropic-version'];
  copyHeaders(request, kind.clientHeaders, headers);
  if (backend.pass_client_headers && backend.type === 'openai') copyHeaders(request, BILLING_REQUEST_HEADERS, headers);
  if (contentType !== undefined) headers['content-type'] = contentType;
  headers['x-request-id'] = requestId;
  for (const name in auth) if (name !== 'anthropic-version') headers[name] = auth[name];
  if (backend.headers) for (const name in backend.headers) headers[name] = backend.headers[name];
  return headers;
}

function copyHeaders(request: IncomingMessage, names: Iterable<string>, into: Headers): void {
  for (const name of names) {
    const value = request.headers[name];
    if (value !== undefined) into[name] = value;
  }
}

/**
 * The client's `accept-encoding` narrowed to the codings the gateway can decode (it reads usage from
 * the body): gzip, deflate, br, with their q-values; `identity` when nothing is left or none was sent
 * (without the header an upstream may pick any coding, zstd included).
 */
export function acceptedCodings(header: string | string[] | undefined): string {
  if (header === undefined) return 'identity';
  const kept = [header]
    .flat()
    .flatMap((value) => value.split(','))
    .map((part) => part.trim())
    .filter((part) => DECODABLE.has(part.split(';')[0].trim().toLowerCase()));
  return kept.length > 0 ? kept.join(', ') : 'identity';
}

const DECODABLE = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'identity']);

/** Failures that happen before a connection carries the request: the upstream cannot have seen it. */
const NOT_SENT = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/**
 * Whether a failed attempt may have reached the upstream: every failure but one that happens before
 * the request is on a connection (a timeout waiting for headers, a reset, a socket closed mid-way:
 * the upstream may be working on it). Unknown failures count as reached: budgets fail closed.
 */
export function reachedUpstream(error: unknown): boolean {
  const code = (error as { code?: string; cause?: { code?: string } })?.code ?? (error as { cause?: { code?: string } })?.cause?.code ?? '';
  return !NOT_SENT.has(code);
}

/** A short, secret-free reason an attempt failed: `timeout`, `connect ECONNREFUSED`, … */
export function describeFailure(error: unknown): string {
  const code = (error as { code?: string })?.code ?? '';
  if (/TIMEOUT/i.test(code)) return 'timeout';
  if (code.startsWith('E')) return `connect ${code}`;
  return code ? code.toLowerCase() : (error as Error)?.name ?? 'error';
}
