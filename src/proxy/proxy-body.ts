import type { IncomingMessage } from 'node:http';
import { Readable, Transform } from 'node:stream';
import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import sjson from 'secure-json-parse';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { hasBody } from '../common/http/front-door';
import { serverConfig } from '../config/server.config';
import { MemberSpan, scanJson } from './json-text';
import { boundaryOf, readUploadHead } from './multipart-head';
import { RouteRule } from './openai-routes';

/**
 * A proxied request's body as the gateway sees it:
 * - `json`: any body that is not an upload, read whole and parsed as JSON whatever its content-type
 *   says; `text` is the body as sent, forwarded unchanged when the gateway does not rewrite it;
 * - `stream`: a multipart upload on a route that takes one, streamed upstream as it arrives;
 * - `none`: no body.
 */
export type ProxyBody =
  | { kind: 'none' }
  /** `members`: where the top-level object's members sit in `text` (null when the body is not an object). */
  | { kind: 'json'; value: unknown; text: string; members: MemberSpan[] | null }
  /**
   * `length`: the client's content-length (sent upstream as is), null when it sent the body chunked;
   * `model`: the upload's `model` field when its head named it (multipart-head.ts), else null.
   */
  | { kind: 'stream'; stream: Readable; length: number | null; limit: number; tooLarge(): boolean; model: string | null };

/** The client went away before its body was complete: nobody to answer. */
export class ClientClosed extends Error {
  constructor() {
    super('the client closed the connection before the body was complete');
  }
}

const NONE: ProxyBody = { kind: 'none' };
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'DELETE']);

/**
 * Reads `/v1` bodies after the key check, fail-closed:
 * - a JSON body is recognised by its content, not its label: `text/plain`, `application/*+json`, a form
 *   type or no content-type at all are parsed like `application/json`, so the model allow-list, the
 *   output cap and the budget see every body; what does not parse is 400 (declared or undeclared JSON)
 *   or 415 (another label), before any upstream request;
 * - `multipart/form-data` is streamed, on the routes that take uploads only (415 elsewhere);
 * - GET/HEAD/DELETE carry no body (400);
 * - bounds: BODY_LIMIT_BYTES for JSON, UPLOAD_LIMIT_BYTES for uploads (413, from content-length
 *   before reading and before `100 Continue` when it says so, else when counting passes it), the whole
 *   JSON body within REQUEST_BODY_TIMEOUT_MS and an upload never idle longer (408), at most
 *   REQUEST_BODY_READS_MAX JSON bodies being received at once (503 server_busy), and JSON nesting
 *   deeper than JSON_MAX_DEPTH refused (400) before it is parsed;
 * - prototype poisoning (`__proto__`, `constructor.prototype` keys) is refused (400).
 */
@Injectable()
export class ProxyBodyReader {
  /** JSON bodies being received right now. */
  private reading = 0;

  constructor(@Inject(serverConfig.KEY) private readonly limits: ConfigType<typeof serverConfig>) {}

  /**
   * `proceed` is called once the body is going to be read, after every check the headers allow (the
   * proxy answers `Expect: 100-continue` there: a refused upload is refused before it is sent).
   */
  async read(request: IncomingMessage, route: RouteRule, proceed: () => void): Promise<ProxyBody> {
    const method = request.method ?? 'GET';
    const type = mediaType(request.headers['content-type']);
    if (!hasBody(request)) {
      // Clients often send a JSON content-type on every request: only a POST that says so needs a body.
      if (method === 'POST' && type !== '' && declaredJson(type)) throw new GatewayError(ErrorCode.InvalidRequest, `the body cannot be empty when content-type is '${type}'`);
      return NONE;
    }
    if (BODYLESS_METHODS.has(method)) throw new GatewayError(ErrorCode.InvalidRequest, `a ${method} request cannot carry a body`);
    const upload = type === 'multipart/form-data';
    if (upload && !route.uploads) throw new GatewayError(ErrorCode.UnsupportedMediaType, 'this endpoint takes a JSON body, not multipart/form-data');
    const limit = upload ? this.limits.uploadLimitBytes : this.limits.bodyLimitBytes;
    const declared = declaredLength(request);
    if (declared !== null && declared > limit) throw tooLarge(limit, upload);
    if (upload) {
      // Before `100 Continue`: a multipart type without a usable boundary is refused from its headers.
      const contentType = request.headers['content-type'] ?? '';
      boundaryOf(contentType);
      proceed();
      return this.upload(request, declared, contentType);
    }
    if (this.reading >= this.limits.bodyReadsMax) {
      throw new GatewayError(ErrorCode.ServerBusy, `the gateway is receiving ${this.reading} request bodies already (REQUEST_BODY_READS_MAX); retry shortly`, null, null, {
        'retry-after': '1',
      });
    }
    proceed();
    this.reading++;
    let text: string;
    try {
      text = await readText(request, limit, this.limits.bodyTimeoutMs);
    } finally {
      this.reading--;
    }
    return parseJson(text, type, this.limits.jsonMaxDepth);
  }

  /**
   * A multipart body as a stream, never held whole: bounded by UPLOAD_LIMIT_BYTES (counted as it
   * arrives when no content-length announced it) and by REQUEST_BODY_TIMEOUT_MS between chunks; its
   * head read for the `model` field and the whole of it checked as it passes (multipart-head.ts).
   */
  private async upload(request: IncomingMessage, length: number | null, contentType: string): Promise<ProxyBody> {
    const { uploadLimitBytes: limit, bodyTimeoutMs: idleMs } = this.limits;
    let seen = 0;
    let exceeded = false;
    const counter: Transform = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        idle.refresh();
        seen += chunk.length;
        if (seen > limit) {
          exceeded = true;
          done(tooLarge(limit, true));
        } else done(null, chunk);
      },
      flush(done) {
        clearTimeout(idle);
        done();
      },
    });
    const idle = setTimeout(() => counter.destroy(new GatewayError(ErrorCode.RequestTimeout, `the upload paused longer than ${idleMs} ms`)), idleMs);
    idle.unref();
    counter.once('close', () => clearTimeout(idle));
    const head = await readUploadHead(request, request.pipe(counter), contentType, () => new ClientClosed());
    return { kind: 'stream', stream: head.stream, length, tooLarge: () => exceeded, limit, model: head.model };
  }
}

/** The content-length the client announced; null without one (chunked). */
function declaredLength(request: IncomingMessage): number | null {
  const value = request.headers['content-length'];
  return value === undefined ? null : Number(value);
}

/** The media type of a content-type header, lower-cased, without parameters; '' when absent. */
function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return '';
  const end = contentType.indexOf(';');
  return (end === -1 ? contentType : contentType.slice(0, end)).trim().toLowerCase();
}

/** Whether the client said (or did not say otherwise) that the body is JSON. */
function declaredJson(type: string): boolean {
  return type === '' || type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

function parseJson(text: string, type: string, maxDepth: number): ProxyBody {
  if (text.length === 0) throw new GatewayError(ErrorCode.InvalidRequest, 'the request body is empty; this endpoint takes a JSON body');
  const scan = scanJson(text, maxDepth);
  if (scan.tooDeep) throw new GatewayError(ErrorCode.InvalidRequest, `the JSON body is nested deeper than ${maxDepth} levels (JSON_MAX_DEPTH)`);
  let value: unknown;
  try {
    value = sjson.parse(text, null, { protoAction: 'error', constructorAction: 'error' });
  } catch (error) {
    if (declaredJson(type)) throw new GatewayError(ErrorCode.InvalidRequest, `the body is not valid JSON: ${(error as Error).message}`);
    throw new GatewayError(ErrorCode.UnsupportedMediaType, `this endpoint takes a JSON body (multipart/form-data on upload endpoints); the '${type}' body is not JSON`);
  }
  // Parsers disagree on which of two equal keys counts: the gateway could govern one value while the upstream uses the other.
  if (scan.duplicate !== null) throw new GatewayError(ErrorCode.InvalidRequest, `the JSON body has the key '${scan.duplicate}' twice`, scan.duplicate);
  return { kind: 'json', value, text, members: scan.members };
}

function readText(request: IncomingMessage, limit: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limit) {
        done();
        reject(tooLarge(limit));
      } else chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks, bytes).toString('utf8'));
    };
    // An aborted request emits 'error' (ECONNRESET) and 'close': either way the client is gone.
    const onGone = () => {
      if (request.complete) return;
      done();
      reject(new ClientClosed());
    };
    const timer = setTimeout(() => {
      done();
      reject(new GatewayError(ErrorCode.RequestTimeout, `the request body did not arrive within ${timeoutMs} ms (REQUEST_BODY_TIMEOUT_MS)`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onGone);
      request.off('close', onGone);
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onGone);
    request.on('close', onGone);
  });
}

export function tooLarge(limit: number, upload = false): GatewayError {
  return new GatewayError(ErrorCode.RequestTooLarge, `request body is larger than ${limit} bytes (${upload ? 'UPLOAD_LIMIT_BYTES' : 'BODY_LIMIT_BYTES'})`);
}
