import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_HTTP, OpenAiErrorBody } from './error-status';
import { ErrorCode, GatewayError } from './gateway-error';

const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: ErrorCode.InvalidRequest,
  401: ErrorCode.AdminUnauthorized,
  403: ErrorCode.AdminForbidden,
  404: ErrorCode.NotFound,
  405: ErrorCode.MethodNotAllowed,
  408: ErrorCode.RequestTimeout,
  409: ErrorCode.Conflict,
  413: ErrorCode.RequestTooLarge,
  415: ErrorCode.UnsupportedMediaType,
  429: ErrorCode.RateLimited,
  503: ErrorCode.StorageUnavailable,
};

/**
 * The one place errors become HTTP: GatewayError by its code, Nest/Fastify HTTP errors (unknown
 * route, malformed JSON, oversized body) by their status, anything else as a masked 500 that is
 * logged with its stack but never shows internals to the client.
 */
@Catch()
export class GatewayExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger(GatewayExceptionFilter.name);

  catch(exception: unknown, host: ArgumentsHost): void {
    sendError(host.switchToHttp().getRequest<FastifyRequest>(), host.switchToHttp().getResponse<FastifyReply>(), exception, this.logger);
  }
}

/** Answers with the OpenAI-shaped error for `exception`, unless a response has already started. */
export function sendError(request: FastifyRequest, reply: FastifyReply, exception: unknown, logger: Logger): void {
  const { status, body } = errorResponse(exception, request, logger);
  if (reply.sent || reply.raw.headersSent) return;
  void reply.headers(errorHeaders(exception, status));
  void reply.status(status).header('content-type', 'application/json; charset=utf-8').send(body);
}

/**
 * The same answer on a bare Node response (the `/v1/*` proxy, which bypasses Fastify), with `headers`
 * (request id, rate-limit headers) added to it; `shape` rewrites OpenAI's error body into another API's
 * (src/protocols/errors.ts).
 */
export function sendRawError(
  request: { method?: string; url?: string },
  response: ServerResponse,
  headers: Record<string, string | string[]>,
  exception: unknown,
  logger: Logger,
  shape: (status: number, body: OpenAiErrorBody) => unknown = (_status, body) => body,
): void {
  const { status, body } = errorResponse(exception, { method: request.method ?? 'GET', url: request.url ?? '/' }, logger);
  if (response.headersSent) return;
  writeJson(response, status, { ...headers, ...errorHeaders(exception, status) }, shape(status, body));
}

/** How long a refused upgrade's connection stays half-open for the client to read the answer. */
const SOCKET_LINGER_MS = 1000;

/**
 * The same answer on a connection that asked for an upgrade (no response object: Node has handed the
 * socket over), then the connection is closed. Nothing was upgraded: the client reads an ordinary
 * HTTP error.
 */
export function sendSocketError(socket: Duplex, headers: Record<string, string>, exception: unknown, logger: Logger, request = { method: 'GET', url: '/' }): void {
  const { status, body } = errorResponse(exception, request, logger);
  answerSocket(socket, status, { ...headers, ...errorHeaders(exception, status), 'content-type': 'application/json; charset=utf-8' }, JSON.stringify(body));
}

/** A whole HTTP answer written on a bare connection, which is then closed. */
export function answerSocket(socket: Duplex, status: number, headers: Record<string, string>, body: string | Buffer): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const all = { ...headers, 'content-length': String(Buffer.byteLength(body)), connection: 'close' };
  const head = Object.entries(all)
    .map(([name, value]) => `${name}: ${value.replace(/[\r\n]/g, ' ')}\r\n`)
    .join('');
  socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${head}\r\n`);
  socket.end(body);
  setTimeout(() => socket.destroy(), SOCKET_LINGER_MS).unref();
}

/** Refusals that cannot succeed on retry: bad key, no quota, not allowed. */
const NOT_RETRYABLE = new Set([401, 402, 403]);

/**
 * Headers an error answer needs: the error's own (`allow`, `retry-after`, …), and `x-should-retry:
 * false` on refusals a retry cannot change (OpenAI's SDKs retry what they are not told not to).
 */
export function errorHeaders(exception: unknown, status: number): Record<string, string> {
  const own = exception instanceof GatewayError ? exception.headers : {};
  return NOT_RETRYABLE.has(status) ? { 'x-should-retry': 'false', ...own } : own;
}

/** A whole JSON answer on a bare Node response, with `headers` added. */
export function writeJson(response: ServerResponse, status: number, headers: Record<string, string | string[]>, body: unknown): void {
  const text = JSON.stringify(body) ?? 'null';
  response.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

export function errorResponse(exception: unknown, request: { method: string; url: string }, logger: Logger): { status: number; body: OpenAiErrorBody } {
  if (exception instanceof GatewayError) {
    const { status, type } = ERROR_HTTP[exception.code];
    return { status, body: { error: { message: exception.message, type: exception.type ?? type, code: exception.code, param: exception.param } } };
  }
  const status = httpStatusOf(exception);
  if (status !== null && status < 500) {
    const code = CODE_BY_STATUS[status] ?? ErrorCode.InvalidRequest;
    const message = status === 404 ? `no route for ${request.method} ${request.url.split('?')[0]}` : clientMessage(exception);
    return { status, body: { error: { message, type: ERROR_HTTP[code].type, code, param: null } } };
  }
  logger.error(`unhandled error on ${request.method} ${request.url.split('?')[0]}`, (exception as Error)?.stack);
  const { type } = ERROR_HTTP[ErrorCode.InternalError];
  return { status: 500, body: { error: { message: 'internal error', type, code: ErrorCode.InternalError, param: null } } };
}

function httpStatusOf(exception: unknown): number | null {
  if (exception instanceof HttpException) return exception.getStatus();
  const status = (exception as { statusCode?: unknown })?.statusCode;
  return typeof status === 'number' && status >= 400 && status < 600 ? status : null;
}

/** The message of a 4xx raised by Nest or Fastify (validation, parse errors): safe to show. */
function clientMessage(exception: unknown): string {
  if (exception instanceof HttpException) {
    const response = exception.getResponse();
    const message = typeof response === 'object' && response !== null ? (response as { message?: unknown }).message : response;
    if (Array.isArray(message)) return message.join('; ');
    if (typeof message === 'string') return message;
  }
  return exception instanceof Error ? exception.message : 'bad request';
}
