import { gatewayFileSchema } from './gateway-file';

describe('gateway file: a virtual key\'s cache', () => {
  const parse = (cache?: unknown) =>
    gatewayFileSchema.safeParse({ virtual_keys: [{ id: 'k', token: 'sk-ditto-0123456789abcdef', ...(cache === undefined ? {} : { cache }) }] });

  it('follows the global TTL when absent, and takes 0 (off) or a TTL in seconds', () => {
    expect(parse().data?.virtual_keys[0].cache).toEqual({ ttl_secs: null });
    expect(parse({}).data?.virtual_keys[0].cache).toEqual({ ttl_secs: null });
    expect(parse({ ttl_secs: null }).data?.virtual_keys[0].cache).toEqual({ ttl_secs: null });
    expect(parse({ ttl_secs: 0 }).data?.virtual_keys[0].cache).toEqual({ ttl_secs: 0 });
    expect(parse({ ttl_secs: 3600 }).data?.virtual_keys[0].cache).toEqual({ ttl_secs: 3600 });
  });

  it('refuses a negative or fractional TTL and unknown fields, naming the path', () => {
    for (const cache of [{ ttl_secs: -1 }, { ttl_secs: 1.5 }, { ttl_secs: '60' }, { ttl: 60 }]) {
      const result = parse(cache);
      expect(result.success).toBe(false);
      expect(result.error?.issues[0].path.slice(0, 3)).toEqual(['virtual_keys', 0, 'cache']);
    }
  });
});
