import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { AccountingService, MeteredRequest, Outcome } from '../budgets/accounting.service';
import { OUTPUT_FIELDS, OutputField } from '../budgets/token-estimate';
import { RequestCache } from '../cache/request-cache';
import { ERROR_HTTP } from '../common/errors/error-status';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { closeAfterAnswer } from '../common/http/early-answer';
import { sendProtocolError } from '../protocols/errors';
import type { OutputLimitField } from '../protocols/ingress';
import { ingressFor } from '../protocols/ingresses';
import { translationFor } from '../protocols/translate/translations';
import type { BackendConfig } from '../config/gateway-file';
import { relayTranslated } from './translated-relay';
import { requestIdOf } from '../common/http/request-id';
import { RateLimitsService } from '../rate-limits/rate-limits.service';
import { KeyAdmission } from '../virtual-keys/key-admission';
import { BackendRouter } from './backend-router';
import { Exchange, LOGGED_BODY_MAX_BYTES } from './exchange';
import { MemberEdit, setMember } from './json-text';
import { RouteRule, routeRule } from './openai-routes';
import { upstreamTarget } from './path-safety';
import { ClientClosed, ProxyBodyReader } from './proxy-body';
import { ProxyEvents } from './proxy-event';
import { ResponseRelay } from './relay';
import { proxyConfig } from './proxy.config';
import { UpstreamDispatcher, acceptedCodings } from './upstream-dispatch';

type JsonObject = Record<string, unknown>;

/** Paths whose streams report usage only when asked with `stream_options.include_usage`. */
const INCLUDE_USAGE_PATHS = new Set(['/chat/completions', '/completions']);

/**
 * Forwards `/v1/*` to the routed backend (docs/architecture.md, docs/proxy.md). One request, top to
 * bottom, one stage per concern, each owned by its feature:
 *
 *   path + method (path-safety, openai-routes) → key (virtual-keys/KeyAdmission, before the body)
 *   → body (ProxyBodyReader) → model allow-list → route (BackendRouter) → rate limit
 *   (rate-limits) → cache (cache/RequestCache) → budget + cost reserve (budgets/AccountingService)
 *   → upstream (UpstreamDispatcher: retries, fallback) → relay (ResponseRelay: JSON, SSE, binary)
 *
 * and, exactly once whatever happened: settle the reservation, correct the rate count, answer an
 * error, emit the request's ProxyEvent (audit, metrics, access log).
 */
@Injectable()
export class ProxyService {
  private readonly logger = new Logger(ProxyService.name);

  constructor(
    private readonly keys: KeyAdmission,
    private readonly bodies: ProxyBodyReader,
    private readonly router: BackendRouter,
    private readonly rateLimits: RateLimitsService,
    private readonly cache: RequestCache,
    private readonly accounting: AccountingService,
    private readonly upstream: UpstreamDispatcher,
    private readonly relay: ResponseRelay,
    private readonly events: ProxyEvents,
    @Inject(proxyConfig.KEY) private readonly config: ConfigType<typeof proxyConfig>,
  ) {}

  /**
   * Answers a `/v1` request, errors included (OpenAI error bodies); never throws. Mounted on the front
   * door (src/common/http/front-door.ts): requests reach it on Node's own request and response
   * objects, never through Fastify's routing, hooks and body parsing or Nest's middleware (about 40 µs
   * of CPU per request, docs/benchmarks.md). Not part of the admin OpenAPI document.
   */
  readonly handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const exchange = new Exchange(request, response, requestIdOf(request.headers), this.config.logBodies);
    let failure: { error: unknown } | null = null;
    try {
      await this.forward(exchange);
    } catch (error) {
      failure = this.failed(exchange, error);
    } finally {
      await this.end(exchange, failure);
    }
  };

  private async forward(exchange: Exchange): Promise<void> {
    const { request, event } = exchange;
    // Anthropic's and Gemini's APIs (src/protocols, docs/protocols.md); null: OpenAI's.
    const ingress = ingressFor(request.url ?? '/v1');
    if (ingress) exchange.speaks(ingress.protocol);
    const target = upstreamTarget(request.url ?? '/v1', ingress?.prefix);
    const path = target.split('?')[0];
    const call = ingress?.call(target) ?? null;
    const route: RouteRule = call ? { methods: call.methods, uploads: false } : routeRule(path);
    if (!route.methods.includes(event.method)) {
      const allow = route.methods.join(', ');
      throw new GatewayError(ErrorCode.MethodNotAllowed, `${event.method} is not allowed on ${ingress?.prefix ?? '/v1'}${path}; allowed: ${allow}`, null, null, { allow });
    }
    // A WebSocket endpoint reached without an upgrade (the front door sends upgrades to the realtime stage).
    if (route.websocket) {
      throw new GatewayError(ErrorCode.UpgradeRequired, `/v1${path} is a WebSocket endpoint: connect with Upgrade: websocket`, null, null, { upgrade: 'websocket' });
    }
    const key = call ? this.keys.admitToken(call.presentedKey(request.headers)) : this.keys.admit(request.headers);
    exchange.identify(key);
    // Routes, a model named in the path, batch creation: decided from the request line, before the body.
    // Another API's call (Anthropic's, Gemini's) names its model in its body or path: only its route is checked here.
    if (call) this.keys.checkRoute(key, event.method, `${ingress!.prefix}${path}`);
    else this.keys.checkRequest(key, event.method, path);
    // `100 Continue` only once the headers passed every check (key, method, type, announced size).
    const expectsContinue = /^100-continue$/i.test(request.headers.expect ?? '');
    exchange.body = await this.bodies.read(request, route, () => {
      if (expectsContinue) exchange.response.writeContinue();
    });
    const json = exchange.body.kind === 'json' && isJsonObject(exchange.body.value) ? exchange.body.value : null;
    if (json !== null && json.model !== undefined && typeof json.model !== 'string') throw new GatewayError(ErrorCode.InvalidRequest, "'model' must be a string", 'model');
    const upload = exchange.body.kind === 'stream' ? exchange.body : null;
    const model = call ? call.model(json) : upload ? upload.model : typeof json?.model === 'string' ? json.model : null;
    event.model = model;
    if (model === null) this.keys.checkModelNamed(key, event.method, path, upload !== null, this.router.routesByModel(key.route));
    this.keys.checkModel(key, model);
    // Backends that speak the client's API (OpenAI's: `openai` backends), or that it translates to (docs/protocols.md).
    const native = (b: BackendConfig) => (call ? call.reaches(b) : b.type === 'openai');
    const translation = (b: BackendConfig) => (native(b) ? null : translationFor(exchange.protocol, path, b.type));
    const backends = this.router.route(model, key.route).filter((b) => native(b) || translation(b) !== null);
    const translations = new Set(backends.map(translation).filter((t) => t !== null));
    for (const t of translations) {
      if (!json) throw new GatewayError(ErrorCode.InvalidRequest, 'the body must be a JSON object');
      t.check(json);
    }
    if (backends.length === 0) {
      const speaking = call ? ` speaking ${call.protocol}` : '';
      throw new GatewayError(ErrorCode.BackendError, model ? `no backend${speaking} is configured for model '${model}'` : `no backend${speaking} is configured`);
    }
    event.stream = call ? call.stream(json) : json?.stream === true;

    const metered: MeteredRequest = {
      method: event.method,
      ...(call ? call.metered(json, model!) : { path, body: json }),
      model,
      uploadBytes: exchange.body.kind === 'stream' ? (exchange.body.length ?? exchange.body.limit) : 0,
    };
    exchange.rate = await this.rateLimits.admitRequest(key, () => this.accounting.estimateTokens(metered));
    if (exchange.rate) Object.assign(exchange.headers, exchange.rate.headers);

    const cached = await this.cache.lookup(key, { method: event.method, url: request.url ?? '', headers: request.headers, json, model, backends: backends.map((b) => b.name) });
    if (cached) {
      event.cache = cached.outcome;
      exchange.headers['x-ditto-cache'] = cached.outcome;
      exchange.cache = cached.ticket;
      // A hit is free, unless PROXY_CACHE_CHARGE: then it is admitted like any request (and may be refused).
      if (cached.entry && !this.cache.chargesHits) return this.relay.replay(exchange, cached.entry);
    }

    // Changes to the client's JSON, made in its text (every other byte reaches the upstream as sent).
    const edits = new Map<string, MemberEdit>();
    const admission = await this.accounting.admit(key, metered);
    if (admission) {
      exchange.charge = admission.charge;
      event.scopes = admission.charge.scopes;
      if (admission.outputCap && json) {
        if (call) capOutputAt(edits, json, admission.outputCap.tokens, call.outputLimit);
        else capOutput(edits, json, admission.outputCap.tokens, admission.outputCap.field);
      }
    }
    if (cached?.entry) return this.relay.replay(exchange, cached.entry);

    let strip = false;
    if (event.stream && json && INCLUDE_USAGE_PATHS.has(path)) {
      const options = isJsonObject(json.stream_options) ? json.stream_options : {};
      if (options.include_usage !== true) {
        edits.set('stream_options', (current) => setMember(current !== null && isJsonObject(json.stream_options) ? current : null, 'include_usage', 'true'));
        strip = true;
      }
    }
    const filterModels = request.method === 'GET' && path === '/models' && key.models.length > 0;
    // A body the gateway rewrites is asked for uncompressed; otherwise the client's choice of coding stands.
    const acceptEncoding = strip || filterModels || translations.size > 0 ? 'identity' : acceptedCodings(request.headers['accept-encoding']);
    // Translated requests carry the output limit in force: strict mode's cap, else what was reserved.
    const outputTokens = admission?.outputCap?.tokens ?? exchange.charge?.estimate.perChoice ?? 0;
    const upstreamPath = (b: BackendConfig) => translation(b)?.target(b) ?? (call ? call.upstreamTarget(b) : target);
    const translatedBody = (b: BackendConfig) => translation(b)?.body(json!, b, outputTokens) ?? null;
    const answer = await this.upstream.dispatch(exchange, backends, upstreamPath, json, edits, acceptEncoding, translatedBody);
    if (answer === null) return;
    const translated = translation(answer.backend);
    if (translated) await relayTranslated(exchange, answer, translated.answer(json!));
    else if (filterModels) await this.relay.relayModels(exchange, answer, key);
    else await this.relay.relay(exchange, answer, strip);
  }

  /** Records what went wrong; returns the error to answer with, or null when there is nobody to answer. */
  private failed(exchange: Exchange, error: unknown): { error: unknown } | null {
    const { event } = exchange;
    if (error instanceof ClientClosed) {
      event.aborted = true;
      this.logger.debug(`request ${event.requestId}: ${error.message}`);
    }
    const code = error instanceof GatewayError ? error.code : ErrorCode.InternalError;
    event.status = ERROR_HTTP[code].status;
    event.error = code;
    return event.aborted ? null : { error };
  }

  /** Exactly once per request, on every path: settle, correct the rate count, answer an error, emit the event. */
  private async end(exchange: Exchange, failure: { error: unknown } | null): Promise<void> {
    const { request, response, event } = exchange;
    event.latencyMs = Exchange.since(exchange.started);
    if (exchange.charge) await this.settle(exchange);
    else if (exchange.answered?.id !== undefined) await this.settleBackground(exchange);
    if (exchange.rate) this.rateLimits.finishRequest(exchange.rate, event.charged?.tokens ?? 0);
    if (exchange.responseHead) event.bodies = loggedBodies(exchange);
    // An error is answered once its request is settled (a client that reads the ledger next sees it settled).
    if (failure) {
      closeAfterAnswer(request, response);
      sendProtocolError(exchange.protocol, request, response, exchange.headers, failure.error, this.logger);
    }
    this.events.emit(event);
  }

  /**
   * By how the request ended (budgets' `Outcome`): a 2xx the client had whole is charged its usage (or
   * the reservation when it reported none); a request that reached the upstream but got no complete
   * answer back (timeout, reset, the client left) is charged the reservation, or the usage seen when
   * larger: the upstream may have done and billed the work; anything else (refused, not sent, an
   * upstream error status) is released.
   */
  private async settle(exchange: Exchange): Promise<void> {
    const { event } = exchange;
    const lost = exchange.lost || (event.aborted && exchange.dispatched);
    const outcome: Outcome = lost ? 'lost' : event.status >= 200 && event.status < 300 ? 'complete' : 'failed';
    const queued = outcome === 'complete' && event.usage === null ? queuedResponseId(exchange) : null;
    try {
      event.charged = queued !== null ? await this.accounting.holdForBackground(exchange.charge!, queued) : await this.accounting.settle(exchange.charge!, event.usage, outcome);
    } catch (error) {
      // The reservation stays and the reaper releases it after RESERVATION_TTL_SECS.
      this.logger.error(`settling request ${event.requestId} failed (the reaper will release its reservation): ${(error as Error).message}`);
    }
  }

  /**
   * A background response read back (`GET /v1/responses/{id}`, as JSON or as its stream) or cancelled,
   * and seen ended: the reservation held under its id is settled with its usage, once across replicas
   * (docs/budgets.md, "Background responses"). Nothing when the gateway holds nothing under that id.
   */
  private async settleBackground(exchange: Exchange): Promise<void> {
    const { event } = exchange;
    const { id, status, model } = exchange.answered!;
    if (event.status < 200 || event.status >= 300 || !ENDED_RESPONSE.has(status ?? '') || !BACKGROUND_READ.test(event.path)) return;
    if (event.path.split('/')[3] !== id) return;
    try {
      event.charged = await this.accounting.settleBackground(id!, event.usage, model ?? null);
    } catch (error) {
      this.logger.error(`settling background response ${id} failed (the reaper will release its reservation): ${(error as Error).message}`);
    }
  }
}

/** Responses statuses of a response that will not change any more. */
const ENDED_RESPONSE = new Set(['completed', 'incomplete', 'failed', 'cancelled']);
/** Statuses of a background response still running. */
const PENDING_RESPONSE = new Set(['queued', 'in_progress']);
/** A Responses id as OpenAI writes them; anything else is not used as a reservation id. */
const RESPONSE_ID = /^[A-Za-z0-9_-]{1,128}$/;
/** Where a background response is seen ended: reading it back, or cancelling it. */
const BACKGROUND_READ = /^\/v1\/responses\/[A-Za-z0-9_-]{1,128}(?:\/cancel)?$/;

/** The id of a background response the upstream queued (`POST /v1/responses` with `background: true`), else null. */
function queuedResponseId(exchange: Exchange): string | null {
  const { body, answered, event } = exchange;
  if (event.method !== 'POST' || event.path !== '/v1/responses' || body.kind !== 'json' || !isJsonObject(body.value) || body.value.background !== true) return null;
  return answered?.id !== undefined && RESPONSE_ID.test(answered.id) && PENDING_RESPONSE.has(answered.status ?? '') ? answered.id : null;
}

/**
 * Strict mode's cap as edits: every output-limit field the body carries is lowered to `cap` (an
 * upstream may honour any of them); when it carries none, `field` is added.
 */
function capOutput(edits: Map<string, MemberEdit>, json: JsonObject, cap: number, field: OutputField): void {
  const present = OUTPUT_FIELDS.filter((name) => typeof json[name] === 'number');
  if (present.length === 0) edits.set(field, () => String(cap));
  for (const name of present) if ((json[name] as number) > cap) edits.set(name, () => String(cap));
}

/** capOutput for another API's field (`max_tokens`, `generationConfig.maxOutputTokens`): set when absent, lowered when above. */
function capOutputAt(edits: Map<string, MemberEdit>, json: JsonObject, cap: number, at: OutputLimitField | null): void {
  if (at === null) return;
  const { member, field } = at;
  if (field === undefined) {
    const value = json[member];
    if (typeof value !== 'number' || value > cap) edits.set(member, () => String(cap));
    return;
  }
  const parent = isJsonObject(json[member]) ? (json[member] as JsonObject) : null;
  const value = parent?.[field];
  if (typeof value !== 'number' || value > cap) edits.set(member, (current) => setMember(parent ? current : null, field, String(cap)));
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** AUDIT_LOG_BODIES: the client's request body (JSON as sent, else nothing) and the head of the response. */
function loggedBodies(exchange: Exchange): { request: unknown; response: string } {
  const { body } = exchange;
  let request: unknown = null;
  if (body.kind === 'json' && isJsonObject(body.value)) {
    request = body.text.length <= LOGGED_BODY_MAX_BYTES ? body.value : `${body.text.slice(0, LOGGED_BODY_MAX_BYTES)}…`;
  }
  return { request, response: Buffer.concat(exchange.responseHead?.chunks ?? []).toString('utf8') };
}
