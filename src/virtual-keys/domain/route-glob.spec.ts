import { canonicalTarget } from '../../common/http/canonical-target';
import { routeAllowed, routeMatches, routePatternProblem, routePatternsProblems } from './route-glob';

/** What the proxy matches: the path of the URL the front door made canonical. */
const canonical = (raw: string) => canonicalTarget(raw).url.split('?')[0];

describe('allowed_routes globs', () => {
  it.each([
    ['/v1/chat/completions', '/v1/chat/completions', true],
    ['/v1/chat/completions', '/v1/chat/completions/cmpl_1', false],
    ['/v1/chat/completions', '/v1/Chat/Completions', false],
    ['/v1/audio/*', '/v1/audio/speech', true],
    ['/v1/audio/*', '/v1/audio/transcriptions', true],
    ['/v1/audio/*', '/v1/audio/a/b', false],
    ['/v1/audio/*', '/v1/audiox/speech', false],
    ['/v1/batches*', '/v1/batches', true],
    ['/v1/batches*', '/v1/batches_x', true],
    ['/v1/batches*', '/v1/batches/b_1', false],
    ['/v1/batches/**', '/v1/batches', true],
    ['/v1/batches/**', '/v1/batches/b_1', true],
    ['/v1/batches/**', '/v1/batches/b_1/cancel', true],
    ['/v1/batches/**', '/v1/batchesx', false],
    ['/v1/**', '/v1/anything/at/all', true],
    ['/v1/*/completions', '/v1/chat/completions', true],
    ['/v1/*/completions', '/v1/completions', false],
    ['/v1/models/gpt-4o*', '/v1/models/gpt-4o-mini', true],
    ['/v1/models/gpt-4o*', '/v1/models/gpt-4', false],
    // `.` and `+` are literal, not regular-expression syntax.
    ['/v1/models/gpt-4.1', '/v1/models/gpt-4x1', false],
    ['/v1/models/a+', '/v1/models/aa', false],
    ['/v1/models/a+', '/v1/models/a+', true],
  ])('%s on %s: %s', (pattern, path, expected) => {
    expect(routeMatches(pattern, path)).toBe(expected);
  });

  it('an empty list allows every route; otherwise some pattern must match', () => {
    expect(routeAllowed([], '/v1/batches')).toBe(true);
    expect(routeAllowed(['/v1/chat/completions', '/v1/embeddings'], '/v1/embeddings')).toBe(true);
    expect(routeAllowed(['/v1/chat/completions', '/v1/embeddings'], '/v1/batches')).toBe(false);
    // Gemini's API lives under /v1beta; its calls are segments like `models/gemini-2.5-pro:countTokens`.
    expect(routePatternProblem('/v1beta/models/*:countTokens')).toBeNull();
    expect(routeAllowed(['/v1beta/models/*:countTokens'], '/v1beta/models/gemini-2.5-pro:countTokens')).toBe(true);
    expect(routeAllowed(['/v1beta/models/*:countTokens'], '/v1beta/models/gemini-2.5-pro:generateContent')).toBe(false);
    expect(routeAllowed(['/v1/**'], '/v1beta/models/gemini-2.5-pro:generateContent')).toBe(false);
  });

  it('matches the canonical path, so encoded spellings of a route are that route', () => {
    expect(routeAllowed(['/v1/chat/completions'], canonical('/v1/%63hat/completions'))).toBe(true);
    expect(routeAllowed(['/v1/embeddings'], canonical('/v1/%62atches'))).toBe(false);
    expect(routeAllowed(['/v1/batches'], canonical('/v1/%62atches'))).toBe(true);
    // An encoded "/" stays data inside one segment: `*` does not reach across it into another route.
    expect(canonical('/v1/audio/a%2Fb')).toBe('/v1/audio/a%2Fb');
    expect(routeAllowed(['/v1/audio/speech'], canonical('/v1/audio/a%2Fb'))).toBe(false);
    // Dot segments never reach the glob: the front door refuses them.
    expect(() => canonical('/v1/chat/completions/../../batches')).toThrow(/dot segments/);
    expect(() => canonical('/v1/chat/%2e%2e/batches')).toThrow(/dot segments/);
  });

  it.each([
    ['chat/completions', /must start with "\/v1\/"/],
    ['/chat/completions', /must start with "\/v1\/"/],
    ['/v1', /must start with "\/v1\/"/],
    ['/v1/', /empty segment/],
    ['/v1//chat', /empty segment/],
    ['/v1/chat/', /empty segment/],
    ['/v1/../admin', /dot segment/],
    ['/v1/%62atches', /character/],
    ['/v1/chat?x=1', /character/],
    ['/v1/chat completions', /character/],
    ['/v1/a\\b', /character/],
    ['/v1/batch**', /"\*\*" must be a whole segment/],
    [`/v1/${'a'.repeat(300)}`, /longer than 256/],
  ])('refuses %s', (pattern, problem) => {
    expect(routePatternProblem(pattern)).toMatch(problem);
    // A pattern stored around the validation matches nothing (fail closed).
    expect(routeMatches(pattern, pattern)).toBe(false);
  });

  it('names each bad pattern by its index, and bounds the list', () => {
    expect(routePatternsProblems(['/v1/chat/completions', 'nope'])).toEqual(['[1] "nope" must start with "/v1/" (or "/v1beta/" for Gemini\'s API: patterns match the whole canonical path)']);
    expect(routePatternsProblems(Array.from({ length: 65 }, () => '/v1/**'))).toEqual(['at most 64 patterns']);
  });
});
