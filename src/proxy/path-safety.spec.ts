import { GatewayError } from '../common/errors/gateway-error';
import { canonicalTarget } from '../common/http/canonical-target';
import { upstreamTarget } from './path-safety';

/** What the proxy sends upstream for a raw request target: the front door first, then the proxy's own check. */
const upstreamOf = (raw: string) => upstreamTarget(canonicalTarget(raw).url);

describe('upstreamTarget', () => {
  it('keeps the path after /v1 and the query', () => {
    expect(upstreamOf('/v1/chat/completions')).toBe('/chat/completions');
    expect(upstreamOf('/v1/files/file-abc/content?limit=2&after=x%20y')).toBe('/files/file-abc/content?limit=2&after=x%20y');
    expect(upstreamOf('/v1/models')).toBe('/models');
    expect(upstreamOf('/v1/models/ft%3Agpt-4o%3Aacme')).toBe('/models/ft:gpt-4o:acme');
  });

  it.each([
    '/v1/../admin/keys',
    '/v1/chat/../../etc/passwd',
    '/v1/%2e%2e/admin',
    '/v1/%2E./admin',
    '/v1/./models',
    '/v1/files%2f..%2fadmin',
    '/v1/files%2F..%2Fadmin',
    '/v1/files%5c..',
    '/v1/files\\..\\admin',
    '/v1//evil.example.com/x',
    '/v1/models%0d%0aHost:%20evil',
    '/v1/models?x=%0d%0aHost:%20evil',
    '/v1/models\r\nX: y',
    '/v1/models%00',
    'http://evil.example.com/v1/models',
    '//evil.example.com/v1/models',
    '/v1/%zz',
  ])('refuses %j', (url) => {
    expect(() => upstreamOf(url)).toThrow(GatewayError);
  });
});
