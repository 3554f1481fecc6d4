import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, GatewayError } from '../errors/gateway-error';
import { writeJson } from '../errors/gateway-exception.filter';
import { ERROR_HTTP } from '../errors/error-status';

/** CORS_ALLOWED_ORIGINS as configured: any origin (`*`) or exact origins (`scheme://host[:port]`, as browsers send them). */
export type CorsOrigins = '*' | ReadonlySet<string>;

export interface CorsSettings {
  origins: CorsOrigins;
  /** CORS_MAX_AGE_SECS: how long a browser may reuse a preflight answer. */
  maxAgeSecs: number;
}

/** What the gateway's routes use, all of them (the proxy: GET, POST, DELETE; the admin API: also PUT, PATCH). */
const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE';

/**
 * Request headers a browser may send: what OpenAI's SDKs send (`x-stainless-*` spelled out: the CORS
 * protocol has no wildcards for them), what the gateway reads (cache bypass, request id) and the
 * Anthropic-style key headers. A listed set, never the request's own list echoed back.
 */
const ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'accept',
  'openai-beta',
  'openai-organization',
  'openai-project',
  'idempotency-key',
  'x-request-id',
  'cache-control',
  'x-ditto-cache-bypass',
  'x-api-key',
  'anthropic-version',
  'anthropic-beta',
  'x-stainless-arch',
  'x-stainless-async',
  'x-stainless-custom-poll-interval',
  'x-stainless-helper',
  'x-stainless-helper-method',
  'x-stainless-lang',
  'x-stainless-os',
  'x-stainless-package-version',
  'x-stainless-poll-helper',
  'x-stainless-retry-count',
  'x-stainless-runtime',
  'x-stainless-runtime-version',
  'x-stainless-timeout',
].join(', ');

/**
 * Response headers a page's script may read beyond the CORS-safelisted ones: the request id, the
 * rate-limit and retry headers OpenAI's SDKs read, the gateway's own `x-ditto-*`, and OpenAI's.
 */
const EXPOSED_HEADERS = [
  'x-request-id',
  'x-ditto-request-id',
  'x-ditto-backend',
  'x-ditto-cache',
  'x-ratelimit-limit-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-requests',
  'x-ratelimit-reset-tokens',
  'retry-after',
  'retry-after-ms',
  'x-should-retry',
  'openai-processing-ms',
  'openai-version',
  'openai-organization',
  'openai-project',
].join(', ');

/**
 * Browser access (CORS), applied by the front door before any route sees the request, so that the
 * proxy, the admin API, health and the door's own errors answer alike. Only requests that carry an
 * `Origin` header are concerned (browsers); server-side clients send none and cost nothing here.
 * Credentials (cookies) are never allowed: the gateway authenticates by bearer key only, so
 * `access-control-allow-credentials` is never sent, and `*` is safe to answer when configured.
 */
export class Cors {
  private readonly preflightHeaders: Record<string, string>;

  constructor(private readonly settings: CorsSettings) {
    this.preflightHeaders = {
      'access-control-allow-methods': ALLOWED_METHODS,
      'access-control-allow-headers': ALLOWED_HEADERS,
      'access-control-max-age': String(settings.maxAgeSecs),
    };
  }

  /** The `access-control-allow-origin` for `origin`: `*`, the origin itself, or null when it is not allowed. */
  allowOrigin(origin: string): string | null {
    const { origins } = this.settings;
    if (origins === '*') return '*';
    return origins.has(origin) ? origin : null;
  }

  /** Whether `request` is a CORS preflight: OPTIONS with an Origin and `access-control-request-method`. */
  static isPreflight(request: IncomingMessage): boolean {
    return request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined;
  }

  /**
   * Answers a preflight: 204 with the allowed methods and headers for an allowed origin; 403
   * `origin_not_allowed` without any CORS header otherwise (the browser then refuses the request,
   * and the 403 says why to whoever looks at the network panel). No key is asked for: a preflight
   * never carries one.
   */
  preflight(response: ServerResponse, origin: string, requestId: string): void {
    const allowed = this.allowOrigin(origin);
    if (allowed === null) {
      const error = originNotAllowed(origin);
      const { status, type } = ERROR_HTTP[error.code];
      writeJson(response, status, { vary: 'origin', 'x-request-id': requestId }, { error: { message: error.message, type, code: error.code, param: null } });
      return;
    }
    response.writeHead(204, { ...this.preflightHeaders, 'access-control-allow-origin': allowed, ...(allowed === '*' ? {} : { vary: 'origin' }), 'x-request-id': requestId });
    response.end();
  }

  /**
   * Sets the CORS headers of an actual request's answer (before any route runs: Node merges them
   * with the headers the route writes, errors and event streams included). A disallowed origin gets
   * none, and the browser keeps the answer from the page.
   */
  decorate(response: ServerResponse, origin: string): void {
    const allowed = this.allowOrigin(origin);
    if (allowed === '*') {
      response.setHeader('access-control-allow-origin', '*');
      response.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
      return;
    }
    // The answer depends on the origin: a shared cache must not hand it to another one.
    response.setHeader('vary', 'origin');
    if (allowed === null) return;
    response.setHeader('access-control-allow-origin', allowed);
    response.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
  }
}

/** 403 `origin_not_allowed`: a browser page from an origin CORS_ALLOWED_ORIGINS does not list. */
export function originNotAllowed(origin: string): GatewayError {
  return new GatewayError(ErrorCode.OriginNotAllowed, `origin ${JSON.stringify(origin.slice(0, 200))} is not allowed (CORS_ALLOWED_ORIGINS)`);
}

/**
 * A `vary` value for an answer whose route sets its own (`headers` passed to writeHead win over those
 * set before): the route's fields plus the ones the front door set, so `vary: origin` is not lost.
 */
export function mergedVary(response: ServerResponse, own: string | string[]): string | string[] {
  const before = response.getHeader('vary');
  if (before === undefined) return own;
  const fields = [before, own].flat().flatMap((v) => String(v).split(','));
  const seen = new Map<string, string>();
  for (const field of fields) {
    const name = field.trim();
    if (name !== '' && !seen.has(name.toLowerCase())) seen.set(name.toLowerCase(), name);
  }
  return [...seen.values()].join(', ');
}

/**
 * CORS_ALLOWED_ORIGINS parsed: empty is off (null); `*` any origin; else a comma-separated list of
 * exact origins, each `http(s)://host[:port]` (a trailing `/` is tolerated; case and a default port
 * are normalised the way browsers serialise an origin). Problems name each bad entry.
 */
export function parseCorsOrigins(spec: string): { origins: CorsOrigins | null; problems: string[] } {
  const entries = spec
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (entries.length === 0) return { origins: null, problems: [] };
  if (entries.includes('*')) {
    return entries.length === 1 ? { origins: '*', problems: [] } : { origins: null, problems: ['CORS_ALLOWED_ORIGINS: "*" allows every origin and must stand alone'] };
  }
  const origins = new Set<string>();
  const problems: string[] = [];
  for (const entry of entries) {
    const origin = originOf(entry);
    if (origin === null) problems.push(`CORS_ALLOWED_ORIGINS: ${JSON.stringify(entry)} is not an origin (expected http(s)://host[:port], no path, query or user)`);
    else origins.add(origin);
  }
  return { origins: problems.length === 0 ? origins : null, problems };
}

function originOf(entry: string): string | null {
  // `null` is what sandboxed frames and file:// pages send: allowing it would allow all of them.
  if (!/^https?:\/\/[^/?#@\s]+\/?$/i.test(entry)) return null;
  try {
    const url = new URL(entry);
    return url.username === '' && url.password === '' ? url.origin : null;
  } catch {
    return null;
  }
}
