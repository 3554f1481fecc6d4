import { IncomingMessage, STATUS_CODES, Server, ServerResponse, createServer } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Logger } from '@nestjs/common';
import { ERROR_HTTP, OpenAiErrorBody } from '../errors/error-status';
import { ErrorCode, GatewayError } from '../errors/gateway-error';
import { sendRawError, sendSocketError } from '../errors/gateway-exception.filter';
import { canonicalTarget } from './canonical-target';
import { Cors, CorsSettings, originNotAllowed } from './cors';
import { closeAfterAnswer } from './early-answer';
import { requestIdOf } from './request-id';

export interface FrontDoorOptions {
  /** REQUEST_HEADERS_TIMEOUT_MS: a client must send its request line and headers within this time. */
  headersTimeoutMs: number;
  /** REQUEST_BODY_TIMEOUT_MS: the longest a request body may take to arrive (routes other than the proxy's). */
  bodyTimeoutMs: number;
  /** CORS_ALLOWED_ORIGINS, CORS_MAX_AGE_SECS; null: no browser access (no CORS header at all). */
  cors: CorsSettings | null;
  /**
   * The error shape of the API a refused request target speaks, told by its raw prefix (`/v1/messages`:
   * Anthropic's, `/v1beta`: Google's); undefined: OpenAI's. Given by the composition root, so this
   * module knows no API.
   */
  errorShapeFor?: (rawTarget: string, requestId: string) => ErrorShape | undefined;
}

/** Rewrites the gateway's OpenAI-shaped error body into another API's shape. */
export type ErrorShape = (status: number, body: OpenAiErrorBody) => unknown;

type Listener = (request: IncomingMessage, response: ServerResponse) => void;

/** The proxy's own entry: it authenticates from the headers, then reads the body itself. */
export type PrefixHandler = (request: IncomingMessage, response: ServerResponse) => void;

/** Takes over an upgraded connection (a WebSocket handshake not answered yet): it answers it, or refuses it. */
export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** How often Node checks headers timeouts (its default, 30 s, would let a stalled client stay that long). */
const TIMEOUT_CHECK_MS = 1000;
/** Node's own keep-alive default is 5 s; load balancers keep idle connections for 60 s. */
const KEEP_ALIVE_TIMEOUT_MS = 72_000;

/**
 * The HTTP server every request enters, built for Fastify through its `serverFactory`. Each request
 * target is canonicalised once (`canonicalTarget`: 400 for what is ambiguous) and `request.url` is set
 * to the canonical form before anything else sees it, so the router, the admin guard, the proxy and
 * the audit trail all read one spelling. Requests under a mounted prefix (`/v1/`) go to their handler
 * on Node's own request/response (the proxy: no Fastify routing, hooks or body parsing on its hot
 * path); everything else goes to Fastify. `Expect: 100-continue` is answered by whoever reads the body:
 * Fastify's routes at once, the proxy only after the key check.
 *
 * Browser access (CORS, `cors.ts`) is decided here too, before any route: a preflight is answered by
 * the door itself, and an allowed origin's CORS headers are set on the response before the route
 * writes it. Connection upgrades go to the handler mounted for their exact path (the realtime
 * WebSocket); any other upgrade, and a browser's from an origin CORS does not allow, is refused.
 */
export class FrontDoor {
  private readonly logger = new Logger('FrontDoor');
  private readonly mounts = new Map<string, PrefixHandler>();
  private readonly observers: Listener[] = [];
  private readonly upgrades = new Map<string, UpgradeHandler>();
  private readonly upgradeObservers: Array<(request: IncomingMessage) => void> = [];
  private readonly cors: Cors | null;

  constructor(private readonly options: FrontDoorOptions) {
    this.cors = options.cors === null ? null : new Cors(options.cors);
  }

  /** Serves `${prefix}` and everything under `${prefix}/` with `handler`. */
  mount(prefix: string, handler: PrefixHandler): void {
    this.mounts.set(prefix, handler);
  }

  /** Calls `observer` with every request, first (the shutdown's connection tracking). */
  observe(observer: Listener): void {
    this.observers.push(observer);
  }

  /** Serves WebSocket upgrades of exactly `path` with `handler`. */
  mountUpgrade(path: string, handler: UpgradeHandler): void {
    this.upgrades.set(path, handler);
  }

  /** Calls `observer` with every upgrade request, first (its connection is no longer an HTTP one). */
  observeUpgrades(observer: (request: IncomingMessage) => void): void {
    this.upgradeObservers.push(observer);
  }

  /** Fastify's serverFactory: `fastify` is Fastify's request listener. */
  createServer(fastify: Listener): Server {
    const server = createServer(
      { headersTimeout: this.options.headersTimeoutMs, requestTimeout: 0, connectionsCheckingInterval: TIMEOUT_CHECK_MS, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS },
      (request, response) => this.enter(request, response, fastify, false),
    );
    server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => this.enter(request, response, fastify, true));
    // With a listener, Node hands every `Upgrade` request here (without one, it served them as plain
    // requests: a realtime handshake became a GET to the proxy).
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => this.enterUpgrade(request, socket, head));
    return server;
  }

  /**
   * Fastify's clientErrorHandler: what Node could not take as a request (headers timeout, headers too
   * large, malformed HTTP) is answered in OpenAI's error shape and the connection closed.
   */
  readonly clientError = (error: NodeJS.ErrnoException, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const [code, message] =
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [ErrorCode.RequestTimeout, `the request headers did not arrive within ${this.options.headersTimeoutMs} ms`]
        : error.code === 'HPE_HEADER_OVERFLOW'
          ? [ErrorCode.HeadersTooLarge, 'the request headers are too large']
          : [ErrorCode.InvalidRequest, 'malformed HTTP request'];
    this.logger.debug(`${message} (${error.code ?? error.message}): closing the connection`);
    const { status, type } = ERROR_HTTP[code];
    const body = JSON.stringify({ error: { message, type, code, param: null } });
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
    socket.destroy();
  };

  private enter(request: IncomingMessage, response: ServerResponse, fastify: Listener, expectsContinue: boolean): void {
    for (const observer of this.observers) observer(request, response);
    // CORS off (the default): not even the Origin header is looked at.
    const origin = this.cors === null ? undefined : request.headers.origin;
    if (origin !== undefined) {
      if (Cors.isPreflight(request)) {
        closeAfterAnswer(request, response);
        this.cors!.preflight(response, origin, requestIdOf(request.headers));
        return;
      }
      this.cors!.decorate(response, origin);
    }
    let target;
    try {
      target = canonicalTarget(request.url ?? '');
    } catch (error) {
      closeAfterAnswer(request, response);
      const requestId = requestIdOf(request.headers);
      sendRawError(request, response, { 'x-request-id': requestId }, error, this.logger, this.options.errorShapeFor?.(request.url ?? '', requestId));
      return;
    }
    request.url = target.url;
    const handler = this.handlerFor(target.path);
    if (handler) {
      handler(request, response);
      return;
    }
    // Every answer carries a request id (the proxy sets its own).
    response.setHeader('x-request-id', requestIdOf(request.headers));
    if (expectsContinue) response.writeContinue();
    if (hasBody(request)) this.limitBodyTime(request, response);
    fastify(request, response);
  }

  /**
   * An `Upgrade` request: a WebSocket handshake for a mounted path goes to its handler, from an
   * origin CORS allows when it comes from a browser (it carries `Origin`); everything else is
   * refused with an HTTP error and the connection closed: another protocol (`h2c`: 400), another path
   * (404), a disallowed origin (403). Nothing is upgraded here.
   */
  private enterUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    for (const observer of this.upgradeObservers) observer(request);
    // The HTTP server no longer owns the connection: a reset must not become an unhandled error.
    socket.on('error', () => socket.destroy());
    const refuse = (error: GatewayError) => sendSocketError(socket, { 'x-request-id': requestIdOf(request.headers) }, error, this.logger);
    let target;
    try {
      target = canonicalTarget(request.url ?? '');
    } catch (error) {
      return refuse(error as GatewayError);
    }
    request.url = target.url;
    const protocol = String(request.headers.upgrade ?? '').trim();
    if (protocol.toLowerCase() !== 'websocket') {
      return refuse(new GatewayError(ErrorCode.InvalidRequest, `unsupported upgrade ${JSON.stringify(protocol.slice(0, 64))}: the gateway speaks HTTP/1.1, and WebSocket on /v1/realtime`));
    }
    const handler = this.upgrades.get(target.path);
    if (!handler) return refuse(new GatewayError(ErrorCode.NotFound, `no WebSocket endpoint at ${target.path}: realtime sessions are at /v1/realtime`));
    const origin = request.headers.origin;
    if (origin !== undefined && (this.cors?.allowOrigin(origin) ?? null) === null) return refuse(originNotAllowed(origin));
    handler(request, socket, head);
  }

  private handlerFor(path: string): PrefixHandler | undefined {
    const second = path.indexOf('/', 1);
    const first = second === -1 ? path : path.slice(0, second);
    return this.mounts.get(first);
  }

  /** A body that has not arrived whole within REQUEST_BODY_TIMEOUT_MS is answered 408 and its connection closed. */
  private limitBodyTime(request: IncomingMessage, response: ServerResponse): void {
    const timer = setTimeout(() => {
      if (request.complete) return;
      this.logger.debug(`request body of ${request.method} ${request.url?.split('?')[0]} did not arrive within ${this.options.bodyTimeoutMs} ms: closing`);
      if (!response.headersSent) {
        closeAfterAnswer(request, response);
        sendRawError(request, response, {}, new GatewayError(ErrorCode.RequestTimeout, `the request body did not arrive within ${this.options.bodyTimeoutMs} ms`), this.logger);
      } else request.socket.destroy();
    }, this.options.bodyTimeoutMs);
    timer.unref();
    request.once('end', () => clearTimeout(timer));
    request.once('close', () => clearTimeout(timer));
  }
}

/** Whether a request announces a body (RFC 9112 §6.3): a non-zero content-length or any transfer-encoding. */
export function hasBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
