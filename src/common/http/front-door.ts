import { IncomingMessage, STATUS_CODES, Server, ServerResponse, createServer } from 'node:http';
import type { Socket } from 'node:net';
import { Logger } from '@nestjs/common';
import { ERROR_HTTP } from '../errors/error-status';
import { ErrorCode, GatewayError } from '../errors/gateway-error';
import { sendRawError } from '../errors/gateway-exception.filter';
import { canonicalTarget } from './canonical-target';
import { Cors, CorsSettings } from './cors';
import { closeAfterAnswer } from './early-answer';
import { requestIdOf } from './request-id';

export interface FrontDoorOptions {
  /** REQUEST_HEADERS_TIMEOUT_MS: a client must send its request line and headers within this time. */
  headersTimeoutMs: number;
  /** REQUEST_BODY_TIMEOUT_MS: the longest a request body may take to arrive (routes other than the proxy's). */
  bodyTimeoutMs: number;
  /** CORS_ALLOWED_ORIGINS, CORS_MAX_AGE_SECS; null: no browser access (no CORS header at all). */
  cors: CorsSettings | null;
}

type Listener = (request: IncomingMessage, response: ServerResponse) => void;

/** The proxy's own entry: it authenticates from the headers, then reads the body itself. */
export type PrefixHandler = (request: IncomingMessage, response: ServerResponse) => void;

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
 * writes it.
 */
export class FrontDoor {
  private readonly logger = new Logger('FrontDoor');
  private readonly mounts = new Map<string, PrefixHandler>();
  private readonly observers: Listener[] = [];
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

  /** Fastify's serverFactory: `fastify` is Fastify's request listener. */
  createServer(fastify: Listener): Server {
    const server = createServer(
      { headersTimeout: this.options.headersTimeoutMs, requestTimeout: 0, connectionsCheckingInterval: TIMEOUT_CHECK_MS, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS },
      (request, response) => this.enter(request, response, fastify, false),
    );
    server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => this.enter(request, response, fastify, true));
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
      sendRawError(request, response, { 'x-request-id': requestIdOf(request.headers) }, error, this.logger);
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
