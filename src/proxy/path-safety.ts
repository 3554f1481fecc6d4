import { ErrorCode, GatewayError } from '../common/errors/gateway-error';

/**
 * The upstream target for a `/v1/...` URL (or another `prefix`'s: Gemini's `/v1beta`) the front door already made canonical (`canonicalTarget`:
 * no dot or empty segments, no `\`, no controls in the path): the path after `/v1` plus the query, as
 * they are. Two more things are refused (400) because an upstream server might read them its own way:
 * an encoded `/` in the path (some servers decode it into a separator) and encoded control characters
 * in the query.
 */
export function upstreamTarget(canonicalUrl: string, prefix = '/v1'): string {
  const target = canonicalUrl.slice(prefix.length);
  const queryAt = target.indexOf('?');
  const path = queryAt === -1 ? target : target.slice(0, queryAt);
  if (/%2f/i.test(path)) refuse(`an encoded "/" in a ${prefix} path`);
  if (queryAt !== -1 && /%(?:[01][0-9a-f]|7f)/i.test(target.slice(queryAt))) refuse('control characters in the query');
  return target;
}

function refuse(why: string): never {
  throw new GatewayError(ErrorCode.InvalidRequest, `refused request path: ${why}`);
}
