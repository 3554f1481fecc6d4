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

describe('gateway file: numbers', () => {
  const key = (fields: Record<string, unknown>) => ({ virtual_keys: [{ id: 'k', token: 'sk-ditto-0123456789abcdef', ...fields }] });
  const paths = (file: unknown) => {
    const result = gatewayFileSchema.safeParse(file);
    return result.success ? [] : [...new Set(result.error.issues.map((i) => i.path.join('.')))];
  };

  it('takes every numeric setting up to its documented maximum', () => {
    expect(
      paths({
        ...key({ budget: { total_tokens: 1e15, total_usd_micros: 1e15 }, limits: { rpm: 1e10, tpm: 1e10 }, cache: { ttl_secs: 2_592_000 }, expires_at: 9_999_999_999_999 }),
        backends: [{ name: 'b', base_url: 'http://x', timeout_ms: 2_147_483_647, weight: 1_000_000 }],
        pricing: { m: { input_per_mtok_usd: 100_000, output_per_mtok_usd: 0 } },
      }),
    ).toEqual([]);
  });

  it('refuses a number beyond its maximum, not exactly representable or not an integer, naming the field', () => {
    for (const bad of [1e300, 2 ** 53 + 1, 1e15 + 1, 1.5, -1, '10']) {
      expect(paths(key({ budget: { total_tokens: bad } }))).toEqual(['virtual_keys.0.budget.total_tokens']);
      expect(paths(key({ budget: { total_usd_micros: bad } }))).toEqual(['virtual_keys.0.budget.total_usd_micros']);
      expect(paths(key({ limits: { rpm: bad } }))).toEqual(['virtual_keys.0.limits.rpm']);
      expect(paths(key({ cache: { ttl_secs: bad } }))).toEqual(['virtual_keys.0.cache.ttl_secs']);
      expect(paths(key({ expires_at: bad }))).toEqual(['virtual_keys.0.expires_at']);
    }
    // A timeout a Node timer cannot hold would fire at once (1 ms) instead.
    for (const field of ['timeout_ms', 'connect_timeout_ms', 'first_byte_timeout_ms', 'idle_timeout_ms']) {
      expect(paths({ backends: [{ name: 'b', base_url: 'http://x', [field]: 2_147_483_648 }] })).toEqual([`backends.0.${field}`]);
      expect(paths({ backends: [{ name: 'b', base_url: 'http://x', [field]: 2_147_483_647 }] })).toEqual([]);
    }
    expect(paths({ backends: [{ name: 'b', base_url: 'http://x', weight: 1e300 }] })).toEqual(['backends.0.weight']);
    expect(paths({ pricing: { m: { input_per_mtok_usd: 1e300, output_per_mtok_usd: 1 } } })).toEqual(['pricing.m.input_per_mtok_usd']);
    expect(paths({ pricing: { m: { input_cost_per_second: 101 } } })).toEqual(['pricing.m.input_cost_per_second']);
    expect(paths({ pricing: { m: { input_per_mtok_usd: 1, output_per_mtok_usd: 1, max_output_tokens: 1.5 } } })).toEqual(['pricing.m.max_output_tokens']);
  });

  it('takes token prices together, unit prices under LiteLLM names, and refuses an entry with no price', () => {
    expect(paths({ pricing: { whisper: { input_cost_per_second: 0.0001 }, tts: { input_cost_per_character: 0.000015 }, dalle: { output_cost_per_image: 0.04 } } })).toEqual([]);
    expect(paths({ pricing: { m: { input_per_mtok_usd: 1, output_per_mtok_usd: 2, max_output_tokens: 16_384 } } })).toEqual([]);
    expect(paths({ pricing: { m: { input_per_mtok_usd: 1 } } })).toEqual(['pricing.m']);
    expect(paths({ pricing: { m: { max_output_tokens: 100 } } })).toEqual(['pricing.m']);
    expect(paths({ pricing: { m: { input_cost_per_pixel: 1 } } })).toEqual(['pricing.m']);
  });

  describe('backend timeouts', () => {
    const backend = (fields: Record<string, unknown>) => gatewayFileSchema.parse({ backends: [{ name: 'b', base_url: 'http://x', ...fields }] }).backends[0];

    it('default to 600 s for the first byte and between chunks (the OpenAI SDKs wait 600 s), 10 s to connect', () => {
      expect(backend({})).toMatchObject({ first_byte_timeout_ms: 600_000, idle_timeout_ms: 600_000, connect_timeout_ms: 10_000 });
    });

    it('timeout_ms, the old single knob, sets the first-byte and the idle timeout unless they are set themselves', () => {
      expect(backend({ timeout_ms: 1500 })).toMatchObject({ first_byte_timeout_ms: 1500, idle_timeout_ms: 1500, connect_timeout_ms: 10_000 });
      expect(backend({ timeout_ms: 1500, idle_timeout_ms: 200 })).toMatchObject({ first_byte_timeout_ms: 1500, idle_timeout_ms: 200 });
      expect(backend({ timeout_ms: 1500, first_byte_timeout_ms: 9000, connect_timeout_ms: 50 })).toMatchObject({ first_byte_timeout_ms: 9000, idle_timeout_ms: 1500, connect_timeout_ms: 50 });
    });
  });
});

describe("gateway file: a virtual key's allowed_routes", () => {
  const parse = (routes?: unknown) =>
    gatewayFileSchema.safeParse({ virtual_keys: [{ id: 'k', token: 'sk-ditto-0123456789abcdef', ...(routes === undefined ? {} : { allowed_routes: routes }) }] });

  it('allows every route when absent, and keeps the patterns given', () => {
    expect(parse().data?.virtual_keys[0].allowed_routes).toEqual([]);
    expect(parse(['/v1/chat/completions', '/v1/batches/**']).data?.virtual_keys[0].allowed_routes).toEqual(['/v1/chat/completions', '/v1/batches/**']);
  });

  it('stops start-up on a pattern that is not a route glob, naming the path and the pattern', () => {
    const result = parse(['/v1/chat/completions', 'chat/completions']);
    expect(result.success).toBe(false);
    expect(result.error?.issues[0].path).toEqual(['virtual_keys', 0, 'allowed_routes']);
    expect(result.error?.issues[0].message).toMatch(/\[1\] "chat\/completions" must start with "\/v1\/"/);
    expect(parse('/v1/**').success).toBe(false);
  });
});
