import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import WebSocket, { WebSocketServer } from 'ws';
import { AccountingService, Charge } from '../budgets/accounting.service';
import { ERROR_HTTP } from '../common/errors/error-status';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { answerSocket, sendSocketError } from '../common/errors/gateway-exception.filter';
import { requestIdOf } from '../common/http/request-id';
import { BackendConfig } from '../config/gateway-file';
import { RateAdmission, RateLimitsService } from '../rate-limits/rate-limits.service';
import { KeyAdmission } from '../virtual-keys/key-admission';
import { BackendRouter } from './backend-router';
import { Exchange } from './exchange';
import { ProxyEvent, ProxyEvents } from './proxy-event';
import { proxyConfig } from './proxy.config';
import { RealtimeSession, SessionContext } from './realtime-session';
import { describeFailure, forwardedHeaders } from './upstream-dispatch';

/** `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1). */
const HANDSHAKE_KEY = /^[+/0-9A-Za-z]{22}==$/;
/** A subprotocol is an HTTP token (RFC 6455 §4.1, RFC 9110 §5.6.2). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Subprotocols that go upstream: OpenAI's `realtime` and `openai-beta.*`; never a key, nor anything unknown. */
const FORWARDED_PROTOCOL = /^(?:realtime|openai-beta\.[!#$%&'*+\-.^_`|~0-9A-Za-z]+)$/;
/** An upstream's own HTTP refusal of the handshake is passed on up to this many bytes of its body. */
const REFUSAL_MAX_BYTES = 64 * 1024;

/** The upstream answered the handshake with an HTTP response instead of upgrading. */
class UpstreamRefusal {
  constructor(
    readonly status: number,
    readonly contentType: string,
    readonly body: Buffer,
  ) {}
}

/**
 * `GET /v1/realtime?model=…` WebSocket upgrades (OpenAI's Realtime API), mounted on the front door's
 * upgrade path (docs/proxy.md, "Realtime"). Before anything is upgraded, as for any `/v1` request: the
 * key (headers, or a browser's `openai-insecure-api-key.<key>` subprotocol), the model allow-list on
 * `?model=`, the route, the rate limit (the session counts as one request) and a budget reservation for
 * the first response; a refusal is an ordinary HTTP error (401, 403, 402, 429, …) and nothing is
 * upgraded. Then the upstream handshake (the routed backends in order, like a request's retries),
 * and only once it has succeeded the client's; an upstream that refuses has its status and body passed
 * on. The session itself is a RealtimeSession.
 */
@Injectable()
export class RealtimeProxy implements BeforeApplicationShutdown {
  private readonly logger = new Logger(RealtimeProxy.name);
  private readonly server: WebSocketServer;
  /** What the 101 of each handshake being completed says: the subprotocol chosen (ws asks through handleProtocols) and the request id. */
  private readonly answers = new WeakMap<IncomingMessage, { protocol: string | false; requestId: string }>();
  private readonly sessions = new Set<RealtimeSession>();
  private readonly settings: ConfigType<typeof proxyConfig>['realtime'];

  constructor(
    private readonly keys: KeyAdmission,
    private readonly router: BackendRouter,
    private readonly rateLimits: RateLimitsService,
    private readonly accounting: AccountingService,
    private readonly events: ProxyEvents,
    @Inject(proxyConfig.KEY) private readonly config: ConfigType<typeof proxyConfig>,
  ) {
    this.settings = config.realtime;
    this.server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: this.settings.maxMessageBytes,
      handleProtocols: (_offered, request) => this.answers.get(request)?.protocol ?? false,
    });
    this.server.on('headers', (headers: string[], request: IncomingMessage) => {
      const id = this.answers.get(request)?.requestId;
      if (id !== undefined) headers.push(`x-request-id: ${id}`, `x-ditto-request-id: ${id}`);
    });
  }

  /** The front door's upgrade handler for `/v1/realtime`; never throws. */
  readonly handle = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    void this.open(request, socket, head);
  };

  /** Closes every session (1001) and waits for them to end: the server is going away. */
  async goAway(): Promise<void> {
    await Promise.all([...this.sessions].map((session) => session.goAway()));
  }

  beforeApplicationShutdown(): Promise<void> {
    return this.goAway();
  }

  private async open(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const started = performance.now();
    const event = newEvent(request);
    let gone = false;
    socket.once('close', () => (gone = true));
    let rate: RateAdmission | null = null;
    let charge: Charge | null = null;
    let upstream: WebSocket | null = null;
    try {
      const protocols = offeredProtocols(request);
      const key = this.keys.admitWebSocket(request.headers, protocols);
      event.keyId = key.id;
      event.tenantId = key.tenantId;
      const query = new URLSearchParams((request.url ?? '').split('?')[1] ?? '');
      const model = query.get('model');
      if (!model) throw new GatewayError(ErrorCode.InvalidRequest, 'a realtime session needs ?model= (sessions by transcription intent or call id are not supported)', 'model');
      event.model = model;
      this.keys.checkModel(key, model);
      // OpenAI's Realtime API: only backends that speak OpenAI's API (docs/protocols.md).
      const backends = this.router.route(model, key.route).filter((b) => b.type === 'openai');
      if (backends.length === 0) throw new GatewayError(ErrorCode.BackendError, `no backend speaking openai is configured for model '${model}'`);
      rate = await this.rateLimits.admitRequest(key, () => this.settings.reserveTokens);
      charge = await this.accounting.admitFixed(key, model, this.settings.reserveTokens);
      event.scopes = charge.scopes;
      upstream = await this.connect(request, backends, query, protocols.filter((p) => FORWARDED_PROTOCOL.test(p)), event, () => gone);
      if (upstream === null || gone) throw new ClientGone();
      const session = this.adopt(request, socket, head, upstream, { key, model, event, started, charge, rate });
      if (session === null) throw new ClientGone();
    } catch (error) {
      upstream?.terminate();
      if (charge) await this.accounting.settle(charge, null, 'failed').catch((e: Error) => this.logger.error(`realtime ${event.requestId}: releasing the reservation failed: ${e.message}`));
      if (rate) this.rateLimits.finishRequest(rate, 0);
      event.latencyMs = Exchange.since(started);
      this.refuse(socket, error, event, rate);
      this.events.emit(event);
    }
  }

  /** Completes the client's handshake on top of an open upstream session; null when the client has left. */
  private adopt(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    upstream: WebSocket,
    admitted: Pick<SessionContext, 'key' | 'model' | 'event' | 'started' | 'charge' | 'rate'>,
  ): RealtimeSession | null {
    const offered = offeredProtocols(request);
    // The upstream's choice when the client offered it; else OpenAI's `realtime` (a browser that offered
    // subprotocols refuses an answer that picks none).
    const protocol = offered.includes(upstream.protocol) ? upstream.protocol : offered.includes('realtime') ? 'realtime' : false;
    this.answers.set(request, { protocol, requestId: admitted.event.requestId });
    let session: RealtimeSession | null = null;
    // Synchronous when the socket is still usable; otherwise ws destroys it without calling back.
    this.server.handleUpgrade(request, socket, head, (client) => {
      session = new RealtimeSession(client, upstream, {
        ...admitted,
        accounting: this.accounting,
        rateLimits: this.rateLimits,
        emit: (e) => this.events.emit(e),
        settings: this.settings,
      }, Math.max(1000, this.accounting.reservationTtlMs / 2));
    });
    if (session === null) return null;
    const started: RealtimeSession = session;
    this.sessions.add(started);
    void started.ended.then(() => this.sessions.delete(started));
    return started;
  }

  /**
   * Opens the upstream session: the routed backends in order, up to PROXY_MAX_ATTEMPTS, moving on after
   * a connect error, a handshake timeout (the backend's `timeout_ms`) or a retry status. Null when the
   * client left meanwhile. Throws 502/504 when none could, or UpstreamRefusal with the last one's answer.
   */
  private async connect(
    request: IncomingMessage,
    backends: BackendConfig[],
    query: URLSearchParams,
    protocols: string[],
    event: ProxyEvent,
    clientGone: () => boolean,
  ): Promise<WebSocket | null> {
    const attempts = Math.min(this.config.maxAttempts, backends.length);
    let timedOut = false;
    for (let i = 0; i < attempts; i++) {
      const backend = backends[i];
      event.backend = backend.name;
      const outcome = await this.handshake(request, backend, query, protocols, event.requestId);
      if (outcome instanceof WebSocket) {
        if (clientGone()) {
          outcome.terminate();
          return null;
        }
        return outcome;
      }
      if (clientGone()) return null;
      const last = i === attempts - 1;
      if (outcome instanceof UpstreamRefusal) {
        if (last || !this.config.retryStatuses.has(outcome.status)) throw outcome;
        event.attempts.push({ backend: backend.name, outcome: `status ${outcome.status}` });
        continue;
      }
      timedOut = outcome === 'timeout';
      event.attempts.push({ backend: backend.name, outcome });
    }
    const tried = event.attempts.map((a) => `${a.backend}: ${a.outcome}`).join('; ');
    throw timedOut
      ? new GatewayError(ErrorCode.BackendTimeout, `the upstream did not answer the realtime handshake in time (${tried})`)
      : new GatewayError(ErrorCode.BackendError, `no backend could open a realtime session (${tried})`);
  }

  /** One upstream handshake: the open socket, the upstream's HTTP answer, or why it failed (secret-free). */
  private handshake(request: IncomingMessage, backend: BackendConfig, query: URLSearchParams, protocols: string[], requestId: string): Promise<WebSocket | UpstreamRefusal | string> {
    const model = query.get('model')!;
    const upstreamQuery = new URLSearchParams(query);
    upstreamQuery.set('model', backend.model_map[model] ?? model);
    const url = `${backend.base_url.replace(/^http/, 'ws').replace(/\/+$/, '')}/realtime?${upstreamQuery.toString()}`;
    return new Promise((resolve) => {
      const upstream = new WebSocket(url, protocols, {
        headers: forwardedHeaders(request, backend, requestId) as Record<string, string>,
        // Connect and the 101: a handshake never waits for generated output.
        handshakeTimeout: backend.connect_timeout_ms,
        perMessageDeflate: false,
        maxPayload: this.settings.maxMessageBytes,
        followRedirects: false,
      });
      let settled = false;
      const done = (outcome: WebSocket | UpstreamRefusal | string) => {
        if (settled) return;
        settled = true;
        resolve(outcome);
      };
      upstream.once('open', () => {
        // Nothing is read until the session relays it: the upstream's first event may have come with its 101.
        upstream.pause();
        done(upstream);
      });
      upstream.once('unexpected-response', (_req: ClientRequest, response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        response.on('data', (chunk: Buffer) => {
          if (bytes < REFUSAL_MAX_BYTES) chunks.push(chunk.subarray(0, REFUSAL_MAX_BYTES - bytes));
          bytes += chunk.length;
        });
        const finish = () => {
          upstream.terminate();
          done(new UpstreamRefusal(response.statusCode ?? 502, String(response.headers['content-type'] ?? 'application/json'), Buffer.concat(chunks)));
        };
        response.once('end', finish);
        response.once('error', finish);
      });
      // `on`, not `once`: a refused handshake may report more than one error, and none may go unhandled.
      upstream.on('error', (error) => {
        const reason = /timed out/i.test(error.message) ? 'timeout' : describeFailure(error);
        done(reason === 'error' ? 'handshake failed' : reason);
      });
    });
  }

  /** Answers a handshake that will not be upgraded: the gateway's error, or the upstream's own answer. */
  private refuse(socket: Duplex, error: unknown, event: ProxyEvent, rate: RateAdmission | null): void {
    const headers = { 'x-request-id': event.requestId, 'x-ditto-request-id': event.requestId, ...(rate?.headers ?? {}) };
    if (error instanceof ClientGone) {
      event.aborted = true;
      socket.destroy();
      return;
    }
    if (error instanceof UpstreamRefusal) {
      event.status = error.status;
      event.error = `upstream status ${error.status}`;
      answerSocket(socket, error.status, { ...headers, 'content-type': error.contentType, 'x-ditto-backend': event.backend ?? '' }, error.body);
      return;
    }
    const code = error instanceof GatewayError ? error.code : ErrorCode.InternalError;
    event.status = ERROR_HTTP[code].status;
    event.error = code;
    sendSocketError(socket, headers, error, this.logger, { method: 'GET', url: '/v1/realtime' });
  }
}

class ClientGone extends Error {}

/** The subprotocols a handshake offers, in order; 400 for a malformed list (ws would refuse it too). */
function offeredProtocols(request: IncomingMessage): string[] {
  const version = request.headers['sec-websocket-version'];
  const key = request.headers['sec-websocket-key'];
  if (request.method !== 'GET' || (version !== '13' && version !== '8') || typeof key !== 'string' || !HANDSHAKE_KEY.test(key.trim())) {
    throw new GatewayError(ErrorCode.InvalidRequest, 'not a valid WebSocket handshake (GET with Sec-WebSocket-Key and Sec-WebSocket-Version: 13)');
  }
  const header = request.headers['sec-websocket-protocol'];
  if (header === undefined) return [];
  const protocols = header.split(',').map((p) => p.trim());
  if (protocols.some((p) => !TOKEN.test(p)) || new Set(protocols).size !== protocols.length) {
    // Never echo the list: it may carry a key.
    throw new GatewayError(ErrorCode.InvalidRequest, 'malformed Sec-WebSocket-Protocol header');
  }
  return protocols;
}

function newEvent(request: IncomingMessage): ProxyEvent {
  const requestId = requestIdOf(request.headers);
  return {
    requestId,
    keyId: null,
    tenantId: null,
    method: 'GET',
    path: (request.url ?? '/v1/realtime').split('?')[0],
    model: null,
    backend: null,
    status: 0,
    usage: null,
    latencyMs: 0,
    upstreamMs: null,
    stream: true,
    aborted: false,
    attempts: [],
    error: null,
    scopes: [],
    charged: null,
    cache: null,
    bodies: null,
  };
}
