import { ErrorCode, GatewayError } from '../errors/gateway-error';

/** A request target after the front door: one spelling, seen the same way by every later check. */
export interface CanonicalTarget {
  /** The path, percent-decoded once: what routing, admin auth, path safety and audit reason about. */
  path: string;
  /** The path re-encoded in one canonical way, plus the query as sent: the request's URL from here on. */
  url: string;
}

/** A path whose every segment is plain (no `%`, no leading dot, no empty inner segment) is already canonical. */
const PLAIN_PATH = /^(?:\/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)*\/?$/;
/** Percent-encoded control characters (and DEL). */
const ENCODED_CONTROL = /%(?:[01][0-9a-f]|7f)/i;
const UTF8 = new TextDecoder('utf-8', { fatal: true });
/**
 * Stands for an encoded `/` inside a decoded segment (NUL cannot appear otherwise: it is refused). An
 * encoded slash is data, never a separator: it stays `%2F` in the canonical URL, and the router takes
 * it as part of one segment (`/admin/budgets/project%3Aacme%2Fweb` is the scope `project:acme/web`).
 */
const ENCODED_SLASH = '\u0000';

/**
 * The one canonical form of a raw request target (RFC 9112 origin-form), computed once at the front
 * door. Every percent-escape of the path is decoded exactly once (as UTF-8) and the path re-encoded
 * one way, so `/%61dmin` and `/admin` are the same request for the router, the admin guard, the proxy
 * and the audit trail; an encoded `/` stays encoded (data inside a segment, never a separator). What
 * has no single meaning is refused with 400: a target that is not a path (absolute-form, `*`), a
 * fragment, a `\` (raw or encoded), control characters (raw or encoded, in the path), malformed
 * escapes, bytes that are not valid UTF-8 (overlong forms included), dot segments (`.`/`..`, raw or
 * encoded) and empty segments (`//`); a trailing `/` is kept. Case is left alone: the router is
 * case-sensitive, so `/ADMIN` is simply not a route. The query is kept as sent.
 */
export function canonicalTarget(raw: string): CanonicalTarget {
  if (raw.charCodeAt(0) !== 0x2f) refuse('the request target must be a path starting with "/"');
  const queryAt = raw.indexOf('?');
  const path = queryAt === -1 ? raw : raw.slice(0, queryAt);
  if (raw.includes('#')) refuse('a request target cannot carry a fragment ("#")');
  if (ENCODED_CONTROL.test(path)) refuse('control characters');
  if (PLAIN_PATH.test(path)) return { path, url: raw };
  const segments = path.slice(1).split('/');
  const decoded = segments.map((segment, i) => {
    const text = decodeSegment(segment);
    if (text === '.' || text === '..') refuse('dot segments ("." or "..")');
    if (text === '' && i < segments.length - 1) refuse('empty path segment ("//")');
    return text;
  });
  const query = queryAt === -1 ? '' : raw.slice(queryAt);
  return { path: `/${decoded.join('/')}`.replaceAll(ENCODED_SLASH, '%2F'), url: `/${decoded.map(encodeSegment).join('/')}${query}` };
}

/** One path segment, its escapes decoded once as UTF-8; refuses what cannot be decoded to one meaning. */
function decodeSegment(segment: string): string {
  if (!segment.includes('%')) {
    checkRawCharacters(segment);
    return segment;
  }
  const bytes: number[] = [];
  for (let i = 0; i < segment.length; i++) {
    const code = segment.charCodeAt(i);
    if (code !== 0x25) {
      checkRawCharacter(code);
      bytes.push(code);
      continue;
    }
    const byte = parseInt(segment.slice(i + 1, i + 3), 16);
    if (!/^[0-9a-f]{2}$/i.test(segment.slice(i + 1, i + 3))) refuse('malformed percent-encoding');
    if (byte === 0x5c) refuse('encoded "\\"');
    bytes.push(byte === 0x2f ? 0 : byte);
    i += 2;
  }
  try {
    return UTF8.decode(Uint8Array.from(bytes));
  } catch {
    return refuse('percent-encoded bytes that are not valid UTF-8');
  }
}

function checkRawCharacters(segment: string): void {
  for (let i = 0; i < segment.length; i++) checkRawCharacter(segment.charCodeAt(i));
}

/** Raw bytes a path may hold: printable ASCII but `\`. Anything else must be percent-encoded. */
function checkRawCharacter(code: number): void {
  if (code === 0x5c) refuse('"\\" in the path');
  if (code <= 0x20 || code >= 0x7f) refuse('control, space or non-ASCII characters in the path (percent-encode them)');
}

/** Percent-encodes what RFC 3986 does not allow in a segment; keeps unreserved, sub-delims, `:` and `@`. */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment)
    .replace(/%(?:24|26|2B|2C|3B|3D|3A|40)/g, (escape) => String.fromCharCode(parseInt(escape.slice(1), 16)))
    .replaceAll('%00', '%2F');
}

function refuse(why: string): never {
  throw new GatewayError(ErrorCode.InvalidRequest, `refused request path: ${why}`);
}
