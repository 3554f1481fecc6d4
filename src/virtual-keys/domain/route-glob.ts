/**
 * A key's `allowed_routes` (docs/security.md, "Per-key routes"): glob patterns over the canonical
 * request path, `/v1` included (`/v1/chat/completions`, `/v1/audio/*`, `/v1/batches/**`).
 *
 * - the path matched is the one the front door made canonical (escapes decoded once and re-encoded
 *   one way, no dot or empty segments: `/v1/%62atches` is `/v1/batches`), without the query;
 * - `*` matches any run of characters within one segment, the empty run included (`/v1/audio/*` is
 *   `/v1/audio/speech` but not `/v1/audio/a/b`; `/v1/batches*` is `/v1/batches` but not
 *   `/v1/batches/b_1`);
 * - `**` is a whole segment and matches zero or more segments (`/v1/batches/**` is `/v1/batches`,
 *   `/v1/batches/b_1` and `/v1/batches/b_1/cancel`; `/v1/**` is every route);
 * - everything else matches itself exactly, case included (routes are case-sensitive).
 *
 * A pattern must start with `/v1/` (`/v1beta/` for Gemini's API, docs/protocols.md) and may hold only the characters a canonical path segment shows
 * unencoded (letters, digits, `-._~!$&'()+,;=:@`) plus `*`: no `%`, `?`, `#`, `\`, spaces, dot or empty
 * segments, and `**` only as a whole segment. Anything else is refused where the pattern is set.
 */
export const MAX_ROUTE_PATTERNS = 64;
export const MAX_ROUTE_PATTERN_LENGTH = 256;

const SEGMENT = /^[A-Za-z0-9\-._~!$&'()+,;=:@*]+$/;

/** Why `pattern` is not a valid route glob, or null when it is. */
export function routePatternProblem(pattern: string): string | null {
  if (pattern.length > MAX_ROUTE_PATTERN_LENGTH) return `is longer than ${MAX_ROUTE_PATTERN_LENGTH} characters`;
  if (!pattern.startsWith('/v1/') && !pattern.startsWith('/v1beta/')) return 'must start with "/v1/" (or "/v1beta/" for Gemini\'s API: patterns match the whole canonical path)';
  for (const segment of pattern.slice(1).split('/')) {
    if (segment === '') return 'has an empty segment ("//" or a trailing "/")';
    if (segment === '.' || segment === '..') return 'has a dot segment ("." or "..")';
    if (!SEGMENT.test(segment)) return `has a character a canonical path does not show in segment "${segment}" (allowed: letters, digits, -._~!$&'()+,;=:@ and *; no %, ?, #, \\ or spaces)`;
    if (segment.includes('**') && segment !== '**') return `uses "**" inside segment "${segment}" ("**" must be a whole segment)`;
  }
  return null;
}

/** Every problem of a list of patterns, each naming its index; empty when the list is valid. */
export function routePatternsProblems(patterns: readonly string[]): string[] {
  if (patterns.length > MAX_ROUTE_PATTERNS) return [`at most ${MAX_ROUTE_PATTERNS} patterns`];
  return patterns.flatMap((p, i) => {
    const problem = routePatternProblem(p);
    return problem === null ? [] : [`[${i}] "${p}" ${problem}`];
  });
}

const compiled = new Map<string, RegExp | null>();

/**
 * The pattern as a regular expression over a canonical path, null for an invalid pattern (a key
 * stored around the validation matches nothing: fail closed). Cached: keys are few, patterns fewer.
 */
function compile(pattern: string): RegExp | null {
  let regex = compiled.get(pattern);
  if (regex === undefined) {
    regex = routePatternProblem(pattern) !== null ? null : new RegExp(`^${pattern
      .slice(1)
      .split('/')
      .map((segment) => (segment === '**' ? '(?:/[^/]*)*' : `/${segment.split('*').map(escape).join('[^/]*')}`))
      .join('')}$`);
    if (compiled.size >= 10_000) compiled.clear();
    compiled.set(pattern, regex);
  }
  return regex;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether one pattern matches a canonical path (`/v1/...`, no query). An invalid pattern matches nothing. */
export function routeMatches(pattern: string, path: string): boolean {
  return compile(pattern)?.test(path) ?? false;
}

/** A key's allow-list: empty = every route; else some pattern must match. */
export function routeAllowed(patterns: readonly string[], path: string): boolean {
  return patterns.length === 0 || patterns.some((p) => routeMatches(p, path));
}
