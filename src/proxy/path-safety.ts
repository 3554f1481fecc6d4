import { ErrorCode, GatewayError } from '../common/errors/gateway-error';

/**
 * The upstream target for a raw `/v1/...` request URL: the path after `/v1` plus the query, exactly as
 * the client sent them. Anything that could make the final URL leave the backend's base path is
 * refused (400): dot segments (also percent-encoded), encoded slashes or backslashes, backslashes,
 * empty segments, control characters (CR/LF/NUL, raw or encoded), or a non-origin-form target.
 */
export function upstreamTarget(rawUrl: string): string {
  const refuse = (why: string): never => {
    throw new GatewayError(ErrorCode.InvalidRequest, `refused request path: ${why}`);
  };
  if (!rawUrl.startsWith('/v1/') && rawUrl !== '/v1' && !rawUrl.startsWith('/v1?')) refuse('not under /v1');
  const queryAt = rawUrl.indexOf('?');
  const path = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
  const query = queryAt === -1 ? '' : rawUrl.slice(queryAt);
  // eslint-disable-next-line no-control-regex -- control characters are what is refused here
  if (/[\x00-\x1f\x7f]/.test(rawUrl) || /%(0[0-9a-f]|1[0-9a-f]|7f)/i.test(rawUrl)) refuse('control characters');
  if (/%2f|%5c|\\/i.test(path)) refuse('encoded or back slashes');
  const rest = path.slice('/v1'.length);
  for (const segment of rest.split('/').slice(1)) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return refuse('malformed percent-encoding');
    }
    if (decoded === '.' || decoded === '..') refuse('dot segments');
    if (segment === '' && rest !== '/') refuse('empty path segment');
  }
  return rest + query;
}
