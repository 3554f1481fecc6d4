import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Injectable, Logger } from '@nestjs/common';
import { Dispatcher } from 'undici';
import { AccountingService, Charge } from '../budgets/accounting.service';
import { estimateRequest, withOutputCap } from '../budgets/token-estimate';
import { cacheBypassed, cacheKey, cacheScope, isCacheableRequest } from '../cache/cache-key';
import { CachedResponse } from '../cache/domain/cached-response';
import { ResponseCacheService } from '../cache/response-cache.service';
import { RateLimitRule } from '../rate-limits/domain/rate-decision';
import { RateLimitsService, rateLimitError, rateLimitHeaders } from '../rate-limits/rate-limits.service';
import { ERROR_HTTP } from '../common/errors/error-status';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { sendRawError, writeJson } from '../common/errors/gateway-exception.filter';
import { closeAfterAnswer } from '../common/http/early-answer';
import { AppConfig } from '../config/app-config';
import { BackendConfig } from '../config/gateway-file';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { VirtualKeyIndex } from '../virtual-keys/virtual-key-index';
import { BackendRouter } from './backend-router';
import { routeRule } from './openai-routes';
import { upstreamTarget } from './path-safety';
import { ClientClosed, ProxyBody, ProxyBodyReader } from './proxy-body';
import { ProxyEvent, ProxyEvents } from './proxy-event';
import { SseUsageTap } from './sse-usage-tap';
import { UpstreamPools } from './upstream-pools';
import { Usage, usageFrom } from './usage';

/**
 * Client request headers the upstream may see; everything else stays at the gateway (credentials of
 * any spelling, cookies, hop-by-hop and proxy headers, anything unknown). The gateway adds its own:
 * content-type for JSON, x-request-id, and the backend's key and configured headers.
 */
const FORWARDED_REQUEST_HEADERS = ['accept', 'user-agent', 'idempotency-key', 'openai-beta'];
/** Who is billed upstream: forwarded only to backends with `pass_client_headers`. */
const BILLING_REQUEST_HEADERS = ['openai-organization', 'openai-project'];
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-authenticate', 'trailer', 'upgrade']);
/** Paths whose streams report usage only when asked with `stream_options.include_usage`. */
const INCLUDE_USAGE_PATHS = new Set(['/chat/completions', '/completions']);
/** JSON responses larger than this are relayed without looking for usage. */
const USAGE_SCAN_MAX_BYTES = 8 * 1024 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

type JsonObject = Record<string, unknown>;

type Headers = Record<string, string | string[]>;

interface Exchange {
  request: IncomingMessage;
  response: ServerResponse;
  body: ProxyBody;
  /** Headers of the gateway's own (request id, cache, rate limits), sent with whatever the answer is. */
  headers: Headers;
  event: ProxyEvent;
  /** Fires when the client goes away: cancels the upstream request and any wait on the client. */
  abort: ClientGone;
  started: number;
  /** The client has had the whole response (all bytes, or an SSE stream's `[DONE]`): closing the
   * connection after that is not an abort. */
  relayed: boolean;
  /** The budget/cost reservation to settle when the request ends; null for ungoverned requests. */
  charge: Charge | null;
  /** A request was sent upstream (the upstream may have done work even if no answer came back). */
  dispatched: boolean;
  /** AUDIT_LOG_BODIES: the first bytes of the response as relayed. */
  responseBody: { chunks: Buffer[]; bytes: number } | null;
  /** performance.now() when the current upstream attempt was sent. */
  upstreamStarted: number;
  /** Where to store the response if it turns out cacheable (a miss, or a no-cache bypass); null otherwise. */
  cacheStore: { hash: string; ttlMs: number } | null;
  /** A rate-limited key's admission: the tokens counted for tpm, corrected to the charge when it ends. */
  rate: { rules: RateLimitRule[]; tokens: number; admittedAt: number } | null;
}

const NO_BODY: ProxyBody = { kind: 'none' };

/** AUDIT_LOG_BODIES keeps at most this much of each body. */
const LOGGED_BODY_MAX_BYTES = 64 * 1024;

/**
 * Cancellation when the client goes away, as an EventEmitter: undici takes one as a request's signal,
 * and it costs next to nothing, where an AbortController with its listeners costs ~4 µs per request on
 * Node 20 (docs/benchmarks.md).
 */
class ClientGone extends EventEmitter {
  aborted = false;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }
}

/** Resolves when `out` can take more data; rejects when the client goes away first. */
function drained(out: ServerResponse, gone: ClientGone): Promise<void> {
  if (gone.aborted) return Promise.reject(new Error('client gone'));
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      gone.off('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      out.off('drain', onDrain);
      reject(new Error('client gone'));
    };
    out.once('drain', onDrain);
    gone.once('abort', onAbort);
  });
}

/** A key's model allow-list: exact names or `prefix*`; an empty list allows every model. */
export function modelAllowed(allowed: string[], model: string): boolean {
  return allowed.length === 0 || allowed.some((m) => (m.endsWith('*') ? model.startsWith(m.slice(0, -1)) : m === model));
}

/**
 * Forwards `/v1/*` to the routed backend (DESIGN §1, §5.1): authenticates the virtual key from the
 * in-memory index, checks the model allow-list, tries the routed backends in order on connect errors,
 * timeouts and retryable statuses (never once a byte has reached the client), relays the response as
 * it arrives, reads usage from the JSON body or the SSE stream, and emits one ProxyEvent per request.
 */
@Injectable()
export class ProxyService {
  private readonly logger = new Logger(ProxyService.name);

  constructor(
    private readonly index: VirtualKeyIndex,
    private readonly bodies: ProxyBodyReader,
    private readonly accounting: AccountingService,
    private readonly cache: ResponseCacheService,
    private readonly rateLimits: RateLimitsService,
    private readonly router: BackendRouter,
    private readonly pools: UpstreamPools,
    private readonly events: ProxyEvents,
    private readonly config: AppConfig,
  ) {}

  /** Answers the request, errors included (OpenAI error bodies); never throws. */
  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const requestId = incomingRequestId(request) ?? randomUUID();
    const url = request.url ?? '/';
    const exchange: Exchange = {
      request,
      response,
      body: NO_BODY,
      headers: { 'x-ditto-request-id': requestId },
      abort: new ClientGone(),
      started: performance.now(),
      relayed: false,
      charge: null,
      dispatched: false,
      responseBody: this.config.proxy.logBodies ? { chunks: [], bytes: 0 } : null,
      upstreamStarted: 0,
      cacheStore: null,
      rate: null,
      event: {
        requestId, keyId: null, tenantId: null, method: request.method ?? 'GET', path: url.split('?')[0],
        model: null, backend: null, status: 0, usage: null, latencyMs: 0, upstreamMs: null, stream: false, aborted: false, attempts: [], error: null,
        scopes: [], charged: null, cache: null, bodies: null,
      },
    };
    response.once('close', () => {
      if (!response.writableFinished) {
        exchange.event.aborted = !exchange.relayed;
        exchange.abort.abort();
      }
    });
    let failure: { error: unknown } | null = null;
    try {
      await this.forward(exchange);
    } catch (error) {
      if (error instanceof ClientClosed) {
        exchange.event.aborted = true;
        this.logger.debug(`request ${requestId}: ${error.message}`);
      }
      const code = error instanceof GatewayError ? error.code : ErrorCode.InternalError;
      if (code === ErrorCode.ServerBusy) exchange.headers['retry-after'] = '1';
      exchange.event.status = ERROR_HTTP[code].status;
      exchange.event.error = code;
      if (!exchange.event.aborted) failure = { error };
    } finally {
      exchange.event.latencyMs = sinceMs(exchange.started);
      if (exchange.charge) await this.settle(exchange, exchange.charge);
      if (exchange.rate) this.correctTokenRate(exchange.rate, exchange.event.charged?.tokens ?? 0);
      if (exchange.responseBody) exchange.event.bodies = loggedBodies(exchange.body, exchange.responseBody);
      // An error is answered once its request is settled (a client that reads the ledger next sees it settled).
      if (failure) {
        closeAfterAnswer(request, response);
        sendRawError(request, response, exchange.headers, failure.error, this.logger);
      }
      this.events.emit(exchange.event);
    }
  }

  /**
   * Exactly once per governed request, on every path: the upstream's usage when it reported one; the
   * estimate when the upstream answered 2xx without usage or the client left after the request went
   * upstream (the work may be done and billed); otherwise (refused, upstream error, timeout) nothing.
   */
  private async settle(exchange: Exchange, charge: Charge): Promise<void> {
    const { event } = exchange;
    const answered = event.status >= 200 && event.status < 300;
    try {
      event.charged = await this.accounting.settle(charge, event.usage, answered || (event.aborted && exchange.dispatched));
    } catch (error) {
      // The reservation stays and the reaper releases it after RESERVATION_TTL_SECS.
      this.logger.error(`settling request ${event.requestId} failed (the reaper will release its reservation): ${(error as Error).message}`);
    }
  }

  private async forward(exchange: Exchange): Promise<void> {
    const { request, event } = exchange;
    const target = upstreamTarget(request.url ?? '/v1');
    const targetPath = target.split('?')[0];
    const route = routeRule(targetPath);
    if (!route.methods.includes(event.method)) {
      exchange.headers.allow = route.methods.join(', ');
      throw new GatewayError(ErrorCode.MethodNotAllowed, `${event.method} is not allowed on /v1${targetPath}; allowed: ${exchange.headers.allow}`);
    }
    // The key is checked from the headers before a byte of the body is read (or `100 Continue` sent).
    const key = this.index.authenticate(presentedKey(request));
    event.keyId = key.id;
    event.tenantId = key.tenantId;
    if (/^100-continue$/i.test(request.headers.expect ?? '')) exchange.response.writeContinue();
    exchange.body = await this.bodies.read(request, route);
    const json = exchange.body.kind === 'json' && isJsonObject(exchange.body.value) ? exchange.body.value : null;
    const model = typeof json?.model === 'string' ? json.model : null;
    event.model = model;
    if (model !== null && !modelAllowed(key.models, model)) {
      throw new GatewayError(ErrorCode.ModelNotAllowed, `this key may not use model '${model}'`, 'model');
    }
    const backends = this.router.route(model, key.route);
    if (backends.length === 0) {
      throw new GatewayError(ErrorCode.BackendError, model ? `no backend is configured for model '${model}'` : 'no backend is configured');
    }
    event.stream = json?.stream === true;
    await this.admitRate(exchange, key, targetPath, json);
    const cached = await this.lookUpCache(exchange, key, backends, json);
    if (cached !== null && !this.config.cache.charge) return this.replay(exchange, cached);
    let body = json;
    if (request.method === 'POST') {
      const admission = await this.accounting.admit(key, targetPath, json, model);
      exchange.charge = admission.charge;
      event.scopes = admission.charge.scopes;
      if (admission.outputCap && body) body = withOutputCap(body, admission.outputCap.tokens, admission.outputCap.field);
    }
    // PROXY_CACHE_CHARGE: a hit is admitted like any request (it may be refused) and settled with its stored usage.
    if (cached !== null) return this.replay(exchange, cached);
    let strip = false;
    if (event.stream && body && INCLUDE_USAGE_PATHS.has(targetPath)) {
      const options = isJsonObject(body.stream_options) ? body.stream_options : {};
      if (options.include_usage !== true) {
        body = { ...body, stream_options: { ...options, include_usage: true } };
        strip = true;
      }
    }
    const filterModels = request.method === 'GET' && targetPath === '/models' && key.models.length > 0;
    await this.tryBackends(exchange, backends, target, body, strip, filterModels ? key : null);
  }

  private async tryBackends(
    exchange: Exchange,
    backends: BackendConfig[],
    target: string,
    json: JsonObject | null,
    strip: boolean,
    modelsFilter: VirtualKey | null,
  ): Promise<void> {
    const { request, event, abort } = exchange;
    const rawBody = exchange.body.kind === 'stream' ? exchange.body : null;
    // A streamed request body can be sent once only.
    const attempts = rawBody ? 1 : Math.min(this.config.proxy.maxAttempts, backends.length);
    let timedOut = false;
    for (let i = 0; i < attempts; i++) {
      const backend = backends[i];
      const upstream = this.pools.for(backend);
      event.backend = backend.name;
      const payload = rawBody?.stream ?? jsonPayload(exchange.body, json, backend);
      let response: Dispatcher.ResponseData;
      exchange.dispatched = true;
      exchange.upstreamStarted = performance.now();
      try {
        response = await upstream.pool.request({
          path: upstream.basePath + target,
          method: request.method as Dispatcher.HttpMethod,
          headers: upstreamHeaders(request, backend, event.requestId, exchange.body.kind === 'json'),
          body: payload ?? null,
          signal: abort,
          headersTimeout: backend.timeout_ms,
          bodyTimeout: backend.timeout_ms,
        });
      } catch (error) {
        if (event.aborted) return;
        if (rawBody?.tooLarge()) throw new GatewayError(ErrorCode.RequestTooLarge, `request body is larger than ${this.config.server.bodyLimitBytes} bytes`);
        // The upload itself failed (paused too long): the client's fault, not the backend's.
        if (error instanceof GatewayError) throw error;
        const outcome = describeFailure(error);
        timedOut = outcome === 'timeout';
        event.attempts.push({ backend: backend.name, outcome });
        continue;
      }
      if (this.config.proxy.retryStatuses.has(response.statusCode) && i < attempts - 1) {
        event.attempts.push({ backend: backend.name, outcome: `status ${response.statusCode}` });
        await response.body.dump().catch(() => undefined);
        continue;
      }
      if (modelsFilter) await this.relayFilteredModels(exchange, response, modelsFilter);
      else await this.relay(exchange, response, backend, strip);
      return;
    }
    const tried = event.attempts.map((a) => `${a.backend}: ${a.outcome}`).join('; ');
    throw timedOut
      ? new GatewayError(ErrorCode.BackendTimeout, `the upstream did not answer in time (${tried})`)
      : new GatewayError(ErrorCode.BackendError, `no backend could answer (${tried})`);
  }

  /** Sends status, headers and body as they arrive; reads usage on the way. */
  private async relay(exchange: Exchange, response: Dispatcher.ResponseData, backend: BackendConfig, strip: boolean): Promise<void> {
    const { event, abort } = exchange;
    const contentType = String(response.headers['content-type'] ?? '');
    const sse = contentType.includes('text/event-stream');
    const tap = sse ? new SseUsageTap(strip) : null;
    const collected: Buffer[] | null = !sse && contentType.includes('json') ? [] : null;
    let collectedBytes = 0;

    const raw = exchange.response;
    raw.writeHead(response.statusCode, responseHeaders(exchange.headers, response.headers, backend.name, strip && sse));
    // SSE: headers go out at once (clients wait for them); otherwise with the first body bytes, in one packet.
    if (sse) raw.flushHeaders();
    event.status = response.statusCode;
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        if (collected && collectedBytes < USAGE_SCAN_MAX_BYTES) {
          collected.push(chunk);
          collectedBytes += chunk.length;
        }
        const out = tap ? tap.push(chunk) : chunk;
        if (exchange.responseBody) keepHead(exchange.responseBody, out);
        if (tap?.done) exchange.relayed = true;
        if (out.length > 0 && !raw.write(out)) await drained(raw, abort);
      }
      const rest = tap?.end();
      exchange.relayed = true;
      raw.end(rest);
    } catch (error) {
      // Client gone, or the upstream failed mid-body: the status is already sent, so cut the response.
      if (!abort.aborted) event.error = `upstream ${describeFailure(error)} mid-response`;
      raw.destroy();
    } finally {
      event.usage = tap?.usage ?? (collected && collectedBytes < USAGE_SCAN_MAX_BYTES ? usageFromBuffers(collected) : null);
      event.upstreamMs = sinceMs(exchange.upstreamStarted);
    }
    if (exchange.relayed && collected && collectedBytes < USAGE_SCAN_MAX_BYTES) this.keepInCache(exchange, response.statusCode, contentType, collected);
  }

  /** `GET /v1/models` for a key with an allow-list: only the models it may use. */
  private async relayFilteredModels(exchange: Exchange, response: Dispatcher.ResponseData, key: VirtualKey): Promise<void> {
    const { event } = exchange;
    const body = (await response.body.json().catch(() => null)) as { data?: Array<{ id?: unknown }> } | null;
    event.status = response.statusCode;
    event.upstreamMs = sinceMs(exchange.upstreamStarted);
    if (response.statusCode !== 200 || !Array.isArray(body?.data)) {
      writeJson(exchange.response, response.statusCode, exchange.headers, body);
      return;
    }
    const data = body.data.filter((m) => typeof m.id === 'string' && modelAllowed(key.models, m.id));
    exchange.headers['x-ditto-backend'] = event.backend ?? '';
    writeJson(exchange.response, 200, exchange.headers, { ...body, data });
  }

  /**
   * Rate limits (key `limits`, scope limits): a key without any is not looked at further (no round
   * trip). Otherwise one admission counting the request and, for tpm, its token estimate; 429
   * `rate_limited` when a limit is reached. The `x-ratelimit-*` headers go out either way.
   */
  private async admitRate(exchange: Exchange, key: VirtualKey, targetPath: string, json: JsonObject | null): Promise<void> {
    const rules = this.rateLimits.rulesFor(key);
    if (rules.length === 0) return;
    let tokens = 0;
    if (exchange.request.method === 'POST' && rules.some((rule) => rule.tpm !== null)) {
      const estimate = estimateRequest(targetPath, json ?? {}, this.config.budgets.defaultOutputTokens);
      tokens = estimate.promptTokens + estimate.outputTokens;
    }
    const admittedAt = Date.now();
    const decision = await this.rateLimits.admit(key, tokens, rules);
    Object.assign(exchange.headers, rateLimitHeaders(decision));
    if (!decision.ok) throw rateLimitError(decision);
    exchange.rate = { rules, tokens, admittedAt };
  }

  /** tpm counts the estimate at admission; once the request is charged, the difference is given back (or added). */
  private correctTokenRate(rate: NonNullable<Exchange['rate']>, charged: number): void {
    if (rate.tokens === charged || !rate.rules.some((rule) => rule.tpm !== null)) return;
    void this.rateLimits.adjust(rate.rules, charged - rate.tokens, rate.admittedAt);
  }

  /**
   * The response cache's part of a request: a cached entry to replay, or null (and, on a miss or a
   * `no-cache` bypass, where to store the response). Sets `x-ditto-cache` whenever the cache applies.
   */
  private async lookUpCache(exchange: Exchange, key: VirtualKey, backends: BackendConfig[], json: JsonObject | null): Promise<CachedResponse | null> {
    const { request, event } = exchange;
    const ttlMs = this.cache.ttlMsFor(key);
    // The URL as sent: a query string makes a request uncacheable (the key is built from the path).
    if (ttlMs === 0 || !isCacheableRequest(event.method, request.url ?? '', json)) return null;
    const hash = cacheKey({
      method: event.method,
      path: event.path,
      backends: backends.map((b) => b.name),
      scope: cacheScope(key, this.config.cache.scope),
      body: json,
    });
    const bypass = cacheBypassed(request.headers);
    const found = bypass ? null : await this.cache.lookup(hash);
    event.cache = bypass ? 'bypass' : found ? 'hit' : 'miss';
    exchange.headers['x-ditto-cache'] = event.cache;
    // `no-store` and the explicit bypass keep the answer out of the cache; `no-cache` only skips the lookup.
    const store = !bypass || (!/no-store/i.test(String(request.headers['cache-control'] ?? '')) && request.headers['x-ditto-cache-bypass'] !== '1');
    if (!found && store) exchange.cacheStore = { hash, ttlMs };
    return found?.entry ?? null;
  }

  /** Answers from the cache: the stored status, headers and body; usage as stored (settled as such when charged). */
  private async replay(exchange: Exchange, entry: CachedResponse): Promise<void> {
    const { event } = exchange;
    event.status = entry.status;
    event.usage = entry.usage;
    exchange.relayed = true;
    exchange.response.writeHead(entry.status, { ...exchange.headers, ...entry.headers, 'content-length': entry.body.length });
    exchange.response.end(entry.body);
  }

  /** Keeps a relayed 2xx JSON answer for later identical requests (the cache bounds its size). */
  private keepInCache(exchange: Exchange, status: number, contentType: string, chunks: Buffer[]): void {
    const { cacheStore, event } = exchange;
    if (cacheStore === null || status < 200 || status >= 300 || event.keyId === null) return;
    const now = Date.now();
    this.cache.store(cacheStore.hash, {
      status,
      headers: { 'content-type': contentType, ...(event.backend ? { 'x-ditto-backend': event.backend } : {}) },
      body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
      usage: event.usage,
      keyId: event.keyId,
      tenantId: event.tenantId,
      model: event.model,
      storedAt: now,
      expiresAt: now + cacheStore.ttlMs,
    });
  }
}

function incomingRequestId(request: IncomingMessage): string | null {
  const id = request.headers['x-request-id'];
  return typeof id === 'string' && REQUEST_ID.test(id) ? id : null;
}

function presentedKey(request: IncomingMessage): string {
  const authorization = request.headers.authorization;
  const bearer = typeof authorization === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] : undefined;
  const apiKey = request.headers['x-api-key'];
  const token = bearer ?? (typeof apiKey === 'string' ? apiKey : undefined);
  if (!token) throw new GatewayError(ErrorCode.InvalidApiKey, 'missing API key: send Authorization: Bearer <virtual key>');
  return token;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The JSON body to send upstream: the client's text as it came when the gateway changes nothing
 * (no model map, output cap or `include_usage`), else the changed object serialised; null without one.
 */
function jsonPayload(body: ProxyBody, json: JsonObject | null, backend: BackendConfig): string | null {
  if (body.kind !== 'json') return null;
  if (json === null) return body.text;
  const mapped = typeof json.model === 'string' ? backend.model_map[json.model] : undefined;
  const sent = mapped === undefined ? json : { ...json, model: mapped };
  return sent === body.value ? body.text : JSON.stringify(sent);
}

function upstreamHeaders(request: IncomingMessage, backend: BackendConfig, requestId: string, json: boolean): Headers {
  const headers: Headers = {};
  const copy = (name: string) => {
    const value = request.headers[name];
    if (value !== undefined) headers[name] = value;
  };
  FORWARDED_REQUEST_HEADERS.forEach(copy);
  if (backend.pass_client_headers) BILLING_REQUEST_HEADERS.forEach(copy);
  // JSON bodies go upstream as JSON whatever the client called them; an upload keeps its multipart type (and boundary).
  if (json) headers['content-type'] = 'application/json';
  else copy('content-type');
  headers['x-request-id'] = requestId;
  if (backend.api_key) headers.authorization = `Bearer ${backend.api_key}`;
  return { ...headers, ...(backend.headers ?? {}) };
}

/** The upstream's response headers (hop-by-hop ones dropped) with the gateway's own on top. */
function responseHeaders(own: Headers, upstream: Dispatcher.ResponseData['headers'], backend: string, bodyRewritten: boolean): Headers {
  const headers: Headers = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
    if (bodyRewritten && name === 'content-length') continue;
    headers[name] = value;
  }
  Object.assign(headers, own);
  headers['x-ditto-backend'] = backend;
  return headers;
}

/** Milliseconds since a performance.now() reading, to 0.1 ms. */
function sinceMs(start: number): number {
  return Math.round((performance.now() - start) * 10) / 10;
}

/** Appends to `kept` up to LOGGED_BODY_MAX_BYTES in all. */
function keepHead(kept: { chunks: Buffer[]; bytes: number }, chunk: Buffer): void {
  const head = chunk.subarray(0, LOGGED_BODY_MAX_BYTES - kept.bytes);
  if (head.length === 0) return;
  kept.chunks.push(head);
  kept.bytes += head.length;
}

/** AUDIT_LOG_BODIES: the client's request body (JSON as sent, else nothing) and the head of the response. */
function loggedBodies(body: ProxyBody, response: { chunks: Buffer[] }): { request: unknown; response: string } {
  let request: unknown = null;
  if (body.kind === 'json' && isJsonObject(body.value)) {
    request = body.text.length <= LOGGED_BODY_MAX_BYTES ? body.value : `${body.text.slice(0, LOGGED_BODY_MAX_BYTES)}…`;
  }
  return {
    request,
    response: Buffer.concat(response.chunks).toString('utf8'),
  };
}

function usageFromBuffers(chunks: Buffer[]): Usage | null {
  try {
    return usageFrom(JSON.parse(Buffer.concat(chunks).toString('utf8')));
  } catch {
    return null;
  }
}

/** A short, secret-free reason an attempt failed: `timeout`, `connect ECONNREFUSED`, … */
function describeFailure(error: unknown): string {
  const code = (error as { code?: string })?.code ?? '';
  if (/TIMEOUT/i.test(code)) return 'timeout';
  if (code.startsWith('E')) return `connect ${code}`;
  return code ? code.toLowerCase() : (error as Error)?.name ?? 'error';
}
