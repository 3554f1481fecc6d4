import { sha256Hex } from '../common/sha256';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';

export type CacheScopeMode = 'key' | 'tenant' | 'global';

/**
 * The routes whose answers are cached, as the proxy sees them (a query string makes a path
 * uncacheable): OpenAI's, Anthropic's Messages, and Gemini's generateContent (docs/protocols.md).
 */
export const CACHEABLE_PATHS: ReadonlySet<string> = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/messages']);
const CACHEABLE_GEMINI = /^\/v1beta\/models\/[^/?]+:generateContent$/;

/**
 * JSON with object keys sorted at every depth and no whitespace, so two bodies that differ only in key
 * order or formatting give the same text. Otherwise as JSON.stringify: arrays keep their order,
 * undefined object members are left out, undefined array items and non-finite numbers become null.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  const record = value as Record<string, unknown>;
  const members = Object.keys(record)
    .filter((name) => record[name] !== undefined)
    .sort()
    .map((name) => `${JSON.stringify(name)}:${canonicalJson(record[name])}`);
  return `{${members.join(',')}}`;
}

export interface CacheKeyParts {
  method: string;
  path: string;
  /** The backends the request may be routed to: a set, so their order does not matter. */
  backends: string[];
  /** From cacheScope: who may be served the entry. */
  scope: string;
  body: unknown;
}

/**
 * Hex SHA-256 identifying a cacheable request. The parts are hashed as one JSON array, so no part can
 * run into the next (`a` + `bc` and `ab` + `c` stay different).
 */
export function cacheKey(parts: CacheKeyParts): string {
  const backends = [...new Set(parts.backends)].sort();
  const encoded = JSON.stringify([parts.method.toUpperCase(), parts.path, backends, parts.scope, canonicalJson(parts.body)]);
  return sha256Hex(encoded);
}

/** Who may share an entry: the key itself, its tenant (a key without one: itself), or everyone. */
export function cacheScope(key: Pick<VirtualKey, 'id' | 'tenantId'>, mode: CacheScopeMode): string {
  if (mode === 'global') return 'global';
  if (mode === 'tenant' && key.tenantId !== null) return `tenant:${key.tenantId}`;
  return `key:${key.id}`;
}

/** A POST to one of CACHEABLE_PATHS with a JSON object body that does not ask for a stream. */
export function isCacheableRequest(method: string, path: string, body: unknown): boolean {
  if (method.toUpperCase() !== 'POST' || !(CACHEABLE_PATHS.has(path) || CACHEABLE_GEMINI.test(path))) return false;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return false;
  return (body as Record<string, unknown>).stream !== true;
}

/** The client asked not to be served from (or to fill) the cache. */
export function cacheBypassed(headers: Record<string, string | string[] | undefined>): boolean {
  const directives = [headers['cache-control'] ?? []]
    .flat()
    .flatMap((value) => value.split(','))
    .map((directive) => directive.split('=')[0].trim().toLowerCase());
  if (directives.includes('no-cache') || directives.includes('no-store')) return true;
  const bypass = headers['x-ditto-cache-bypass'];
  return [bypass ?? []].flat().some((value) => value.trim() === '1');
}
