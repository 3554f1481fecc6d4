import { GatewayError } from '../errors/gateway-error';
import { canonicalTarget } from './canonical-target';

describe('canonicalTarget', () => {
  it('keeps a plain target as it is', () => {
    for (const raw of ['/', '/v1/chat/completions', '/v1/', '/admin/keys/abc-1?limit=2&x=%20', '/v1/models/ft:gpt-4o:acme', '/docs/', '/.well-known']) {
      expect(canonicalTarget(raw)).toEqual({ path: raw.split('?')[0], url: raw });
    }
  });

  it('decodes every escape once and re-encodes one way', () => {
    expect(canonicalTarget('/%61dmin/keys')).toEqual({ path: '/admin/keys', url: '/admin/keys' });
    expect(canonicalTarget('/%41%44MIN')).toEqual({ path: '/ADMIN', url: '/ADMIN' });
    expect(canonicalTarget('/api/%61uth/storage-info?x=%61')).toEqual({ path: '/api/auth/storage-info', url: '/api/auth/storage-info?x=%61' });
    // Double encoding decodes once: the literal "%61" stays literal all the way down.
    expect(canonicalTarget('/%2561dmin')).toEqual({ path: '/%61dmin', url: '/%2561dmin' });
    expect(canonicalTarget('/v1/models/ft%3Agpt-4o%3Aacme')).toEqual({ path: '/v1/models/ft:gpt-4o:acme', url: '/v1/models/ft:gpt-4o:acme' });
    expect(canonicalTarget('/v1/files/caf%C3%A9%20x')).toEqual({ path: '/v1/files/café x', url: '/v1/files/caf%C3%A9%20x' });
    expect(canonicalTarget('/v1/a;b%3Bc')).toEqual({ path: '/v1/a;b;c', url: '/v1/a;b;c' });
    // An encoded slash is data inside its segment, kept encoded; "%252F" is the text "%2F", encoded.
    expect(canonicalTarget('/admin/budgets/project%3Aacme%2fweb')).toEqual({ path: '/admin/budgets/project:acme%2Fweb', url: '/admin/budgets/project:acme%2Fweb' });
    expect(canonicalTarget('/admin/budgets/x%252Fy').url).toBe('/admin/budgets/x%252Fy');
  });

  it.each([
    'http://evil.example.com/v1/models',
    '*',
    '',
    '//evil.example.com/v1/models',
    '/v1//x',
    '/admin//keys',
    '/v1/../admin/keys',
    '/v1/chat/../../etc/passwd',
    '/v1/%2e%2e/admin',
    '/v1/%2E./admin',
    '/v1/./models',
    '/./admin',
    '/admin/.',
    '/v1/files%5c..',
    '/v1/files\\..\\admin',
    '/v1/models%0d%0aHost:%20evil',
    '/v1/models\r\nX: y',
    '/v1/models%00',
    '/v1/models\u0000',
    '/v1/mod els',
    '/v1/caf\u00e9',
    '/v1/%zz',
    '/v1/%4',
    '/%c0%afadmin',
    '/%c1%a1dmin',
    '/%e0%81%a1dmin',
    '/%ff',
    '/admin#x',
  ])('refuses %j', (raw) => {
    expect(() => canonicalTarget(raw)).toThrow(GatewayError);
  });
});
