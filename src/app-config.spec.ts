import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parse } from 'dotenv';
import { loadAppConfig } from './app-config';
import { ConfigError } from './config/config-error';

function problems(env: Record<string, string>): string[] {
  try {
    loadAppConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

function gatewayFile(content: string, ext = 'json'): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'ditto-cfg-')), `gateway.${ext}`);
  writeFileSync(file, content);
  return file;
}

describe('loadAppConfig', () => {
  it('has working defaults with no environment at all', () => {
    const config = loadAppConfig({});
    expect(config.server.port).toBe(8080);
    expect(config.storage.selection).toEqual({ forced: null, fallback: true, redisUrlVariable: null, postgres: false, mongodb: false });
    expect(config.storage.options.sqlite.path).toBe('./data/ditto.sqlite');
    expect(config.storage.options.postgres).toMatchObject({ poolMin: 2, poolMax: 10 });
    expect(config.storage.options.redis).toMatchObject({ prefix: 'ditto', timeoutMs: 10_000 });
    expect(config.storage.options.mongodb.database).toBe('ditto');
    expect(config.admin).toEqual({ token: null, readToken: null });
    expect(config.gateway.backends).toEqual([]);
  });

  it('starts from a copy of .env.example as it is: empty means default, the default gateway file may be missing', () => {
    const example = parse(readFileSync(path.join(__dirname, '../.env.example')));
    const cwd = process.cwd();
    process.chdir(mkdtempSync(path.join(tmpdir(), 'ditto-env-example-')));
    try {
      const config = loadAppConfig(example);
      expect(config.server.port).toBe(8080);
      expect(config.budgets).toMatchObject({ mode: 'strict', defaultOutputTokens: 1024, unknownModelCost: 'refuse' });
      expect(config.gateway.backends).toEqual([]);
    } finally {
      process.chdir(cwd);
    }
  });

  it('prefers VALKEY_URL over REDIS_URL and maps valkey:// to the redis protocol', () => {
    const config = loadAppConfig({ VALKEY_URL: 'valkeys://default:pw@cache:6380', REDIS_URL: 'redis://other:6379' });
    expect(config.storage.selection.redisUrlVariable).toBe('VALKEY_URL');
    expect(config.storage.options.redis.url).toBe('rediss://default:pw@cache:6380');
  });

  it('reports every problem at once, naming each variable, without echoing URL values', () => {
    const found = problems({
      STORAGE_BACKEND: 'cassandra',
      PORT: '99999',
      REDIS_URL: 'http://user:secretpw@host',
      PG_POOL_MIN: 'x',
      STORAGE_FALLBACK: 'maybe',
      ADMIN_TOKEN: 'short',
    });
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual(
      ['ADMIN_TOKEN', 'PG_POOL_MIN', 'PORT', 'REDIS_URL', 'STORAGE_BACKEND', 'STORAGE_FALLBACK'].sort(),
    );
    expect(found.join('\n')).not.toContain('secretpw');
  });

  it('requires the URL of a forced backend and a sane pool', () => {
    expect(problems({ STORAGE_BACKEND: 'postgres' })).toEqual(['STORAGE_BACKEND: "postgres" needs POSTGRES_DSN to be set']);
    expect(problems({ STORAGE_BACKEND: 'redis' })).toEqual(['STORAGE_BACKEND: "redis" needs VALKEY_URL or REDIS_URL to be set']);
    expect(problems({ PG_POOL_MIN: '20', PG_POOL_MAX: '10' })).toEqual(['PG_POOL_MIN: must not exceed PG_POOL_MAX']);
  });

  it('defines a single default backend from UPSTREAM_BASE_URL without a gateway file', () => {
    const config = loadAppConfig({ UPSTREAM_BASE_URL: 'http://127.0.0.1:11434/v1', UPSTREAM_API_KEY: 'up-key' });
    expect(config.gateway.backends).toEqual([
      expect.objectContaining({ name: 'default', base_url: 'http://127.0.0.1:11434/v1', api_key: 'up-key' }),
    ]);
    expect(config.gateway.router.default_backends).toEqual(['default']);
  });
});

describe('gateway config file', () => {
  const valid = {
    backends: [{ name: 'openai', base_url: 'https://api.openai.com/v1', api_key: '${OPENAI_API_KEY}', model_map: { 'gpt-4o': 'gpt-4o-2024-08-06' } }],
    router: { default_backends: ['openai'], rules: [{ model: 'gpt-*', backends: ['openai'] }] },
    virtual_keys: [{ id: 'demo', token: '${DEMO_KEY}', budget: { total_tokens: 100000 } }],
    pricing: { 'gpt-4o-mini': { input_per_mtok_usd: 0.15, output_per_mtok_usd: 0.6, cached_input_per_mtok_usd: 0.075 } },
  };

  it('loads JSON with ${VAR} and ${VAR:-default} resolved from the environment', () => {
    const file = gatewayFile(JSON.stringify({ ...valid, backends: [{ ...valid.backends[0], base_url: '${BASE:-https://api.openai.com/v1}' }] }));
    const config = loadAppConfig({ GATEWAY_CONFIG: file, OPENAI_API_KEY: 'sk-upstream', DEMO_KEY: 'sk-ditto-demo-0123456789abcdef' });
    expect(config.gateway.backends[0]).toMatchObject({ api_key: 'sk-upstream', base_url: 'https://api.openai.com/v1', first_byte_timeout_ms: 600000, idle_timeout_ms: 600000, connect_timeout_ms: 10000, weight: 1 });
    expect(config.gateway.virtual_keys[0]).toMatchObject({ id: 'demo', token: 'sk-ditto-demo-0123456789abcdef', enabled: true });
    expect(config.gateway.virtual_keys[0].budget).toEqual({ total_tokens: 100000, total_usd_micros: null });
  });

  it('loads YAML', () => {
    const file = gatewayFile('backends:\n  - name: local\n    base_url: http://127.0.0.1:8000/v1\nrouter:\n  default_backends: [local]\n', 'yaml');
    expect(loadAppConfig({ GATEWAY_CONFIG: file }).gateway.backends[0].name).toBe('local');
  });

  it('names the JSON path of every problem', () => {
    const file = gatewayFile(
      JSON.stringify({
        backends: [{ name: 'a', base_url: 'ftp://x' }, { name: 'a', base_url: 'http://ok' }],
        router: { default_backends: ['missing'] },
        virtual_keys: [{ id: 'k', token: '${UNSET_TOKEN_VAR}' }],
        extra: true,
      }),
    );
    const found = problems({ GATEWAY_CONFIG: file });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/virtual_keys\[0\]\.token: environment variable UNSET_TOKEN_VAR is not set/),
        expect.stringMatching(/backends\[0\]\.base_url/),
        expect.stringMatching(/extra/),
      ]),
    );
  });

  it('reports unknown backends and duplicates after the shape is valid', () => {
    const file = gatewayFile(JSON.stringify({ backends: [{ name: 'a', base_url: 'http://a' }, { name: 'a', base_url: 'http://b' }], router: { default_backends: ['b'] } }));
    expect(problems({ GATEWAY_CONFIG: file })).toEqual([
      'gateway.json: backends[1].name: duplicate backend "a"',
      'gateway.json: router.default_backends[0]: unknown backend "b"',
    ]);
  });

  it('rejects an unparseable file and a missing file the operator named', () => {
    expect(problems({ GATEWAY_CONFIG: gatewayFile('{ not json') })[0]).toMatch(/^GATEWAY_CONFIG: ".*gateway.json" cannot be parsed/);
    expect(problems({ GATEWAY_CONFIG: '/nonexistent/gateway.json' })).toEqual(['GATEWAY_CONFIG: file "/nonexistent/gateway.json" does not exist']);
  });
});
