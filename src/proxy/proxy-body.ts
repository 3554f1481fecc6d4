import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import sjson from 'secure-json-parse';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';

/**
 * A proxied request's body as the gateway sees it:
 * - `json`: an `application/json` body, read whole (up to BODY_LIMIT_BYTES) and parsed; `text` is the
 *   body as sent, forwarded unchanged when the gateway does not rewrite it;
 * - `stream`: any other body (audio, files), left unread for the proxy to stream upstream;
 * - `none`: GET/HEAD, or no body at all.
 */
export type ProxyBody = { kind: 'none' } | { kind: 'json'; value: unknown; text: string } | { kind: 'stream'; stream: Readable };

const NONE: ProxyBody = { kind: 'none' };

/**
 * Reads the body of a `/v1/*` request the way Fastify's default parsers did for the admin API: JSON
 * parsed with prototype-poisoning protection (a `__proto__` or `constructor.prototype` key is refused),
 * an empty or malformed JSON body is 400 `invalid_request`, a body over `limit` bytes is 413
 * `request_too_large` (from its content-length without reading it, else as soon as it crosses the limit).
 */
export async function readProxyBody(request: IncomingMessage, limit: number): Promise<ProxyBody> {
  if (request.method === 'GET' || request.method === 'HEAD') return NONE;
  const length = request.headers['content-length'];
  if (length === undefined && request.headers['transfer-encoding'] === undefined) return NONE;
  if (Number(length) > limit) throw tooLarge(limit);
  if (!isJsonMediaType(request.headers['content-type'])) return length === '0' ? NONE : { kind: 'stream', stream: request };
  const text = await readText(request, limit);
  if (text.length === 0) throw new GatewayError(ErrorCode.InvalidRequest, "the body cannot be empty when content-type is 'application/json'");
  try {
    return { kind: 'json', value: sjson.parse(text, null, { protoAction: 'error', constructorAction: 'error' }), text };
  } catch (error) {
    throw new GatewayError(ErrorCode.InvalidRequest, `the body is not valid JSON: ${(error as Error).message}`);
  }
}

/** `application/json`, with or without parameters (`; charset=utf-8`). */
function isJsonMediaType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const end = contentType.indexOf(';');
  return (end === -1 ? contentType : contentType.slice(0, end)).trim().toLowerCase() === 'application/json';
}

function readText(request: IncomingMessage, limit: number): Promise<string> {
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
    const onError = (error: Error) => {
      done();
      reject(error);
    };
    // The client went away before the whole body arrived: nothing to forward.
    const onClose = () => {
      if (request.complete) return;
      done();
      reject(new GatewayError(ErrorCode.InvalidRequest, 'the client closed the connection before the body was complete'));
    };
    const done = () => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
      request.off('close', onClose);
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
    request.on('close', onClose);
  });
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError(ErrorCode.RequestTooLarge, `request body is larger than ${limit} bytes`);
}
