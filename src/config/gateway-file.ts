import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import {
  MAX_CACHE_TTL_SECS,
  MAX_EPOCH_MS,
  MAX_LIMIT,
  MAX_PRICE_PER_MTOK_USD,
  MAX_PRICE_PER_UNIT_USD,
  MAX_REQUEST_TOKENS,
  MAX_RATE_LIMIT,
  MAX_TIMEOUT_MS,
  MAX_WEIGHT,
} from '../common/numeric-limits';
import { ConfigError, formatPath } from './config-error';

/** An integer in [min, max] (docs/budgets.md, "Numbers": every numeric setting has a maximum). */
const int = (min: number, max: number) => z.number().int().min(min).max(max);
/** Timeouts of an upstream request (docs/proxy.md, "Timeouts"): OpenAI's SDKs wait 600 s, so the gateway waits as long. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 600_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

const name = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . : -');

/** The API a backend speaks (docs/protocols.md): its auth header, base path and where usage lives. */
export const BACKEND_TYPES = ['openai', 'anthropic', 'gemini'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

const backendSchema = z.strictObject({
  name,
  type: z.enum(BACKEND_TYPES).default('openai'),
  base_url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
  api_key: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  // Forward the client's OpenAI-Organization / OpenAI-Project headers (off: the backend's key decides who is billed).
  pass_client_headers: z.boolean().default(false),
  // The old single knob: the first-byte and the idle timeout both, unless those are set themselves.
  timeout_ms: int(1, MAX_TIMEOUT_MS).optional(),
  connect_timeout_ms: int(1, MAX_TIMEOUT_MS).default(DEFAULT_CONNECT_TIMEOUT_MS),
  first_byte_timeout_ms: int(1, MAX_TIMEOUT_MS).optional(),
  idle_timeout_ms: int(1, MAX_TIMEOUT_MS).optional(),
  weight: int(0, MAX_WEIGHT).default(1),
  model_map: z.record(z.string(), z.string()).default({}),
}).transform(({ timeout_ms, first_byte_timeout_ms, idle_timeout_ms, ...backend }) => ({
  ...backend,
  first_byte_timeout_ms: first_byte_timeout_ms ?? timeout_ms ?? DEFAULT_UPSTREAM_TIMEOUT_MS,
  idle_timeout_ms: idle_timeout_ms ?? timeout_ms ?? DEFAULT_UPSTREAM_TIMEOUT_MS,
}));

const virtualKeySchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_.:@-]{1,128}$/, 'expected 1-128 of A-Z a-z 0-9 _ . : @ -'),
  token: z.string().min(16, 'expected at least 16 characters'),
  name: z.string().max(256).optional(),
  enabled: z.boolean().default(true),
  expires_at: int(0, MAX_EPOCH_MS).nullable().default(null),
  tenant_id: z.string().min(1).nullable().default(null),
  project_id: z.string().min(1).nullable().default(null),
  user_id: z.string().min(1).nullable().default(null),
  models: z.array(z.string().min(1)).default([]),
  limits: z
    .strictObject({ rpm: int(1, MAX_RATE_LIMIT).nullable().default(null), tpm: int(1, MAX_RATE_LIMIT).nullable().default(null) })
    .default({ rpm: null, tpm: null }),
  // Response cache TTL in seconds: 0 = off for this key, null = the global PROXY_CACHE_TTL_SECS.
  cache: z.strictObject({ ttl_secs: int(0, MAX_CACHE_TTL_SECS).nullable().default(null) }).default({ ttl_secs: null }),
  budget: z
    .strictObject({
      total_tokens: int(0, MAX_LIMIT).nullable().default(null),
      total_usd_micros: int(0, MAX_LIMIT).nullable().default(null),
    })
    .default({ total_tokens: null, total_usd_micros: null }),
  route: name.nullable().default(null),
  metadata: z.record(z.string(), z.unknown()).default({}),
});

const price = z.number().min(0).max(MAX_PRICE_PER_MTOK_USD);
/**
 * Per-unit prices under LiteLLM's names (USD per unit), read from gateway.json and PRICING_FILE alike
 * (src/costs/pricing.ts says which unit each prices).
 */
export const UNIT_PRICE_FIELDS = ['input_cost_per_second', 'output_cost_per_second', 'input_cost_per_character', 'output_cost_per_image', 'input_cost_per_image'] as const;
const unitPrice = z.number().min(0).max(MAX_PRICE_PER_UNIT_USD).optional();
/**
 * A model's prices: USD per million tokens (input and output together), and/or USD per unit under
 * LiteLLM's names for models billed in seconds, characters or images; `max_output_tokens` is what one
 * response can hold (what a request without an output limit reserves).
 */
const priceSchema = z
  .strictObject({
    input_per_mtok_usd: price.optional(),
    output_per_mtok_usd: price.optional(),
    cached_input_per_mtok_usd: price.optional(),
    cache_write_input_per_mtok_usd: price.optional(),
    input_cost_per_second: unitPrice,
    output_cost_per_second: unitPrice,
    input_cost_per_character: unitPrice,
    output_cost_per_image: unitPrice,
    input_cost_per_image: unitPrice,
    max_output_tokens: int(1, MAX_REQUEST_TOKENS).optional(),
  })
  .refine((p) => (p.input_per_mtok_usd === undefined) === (p.output_per_mtok_usd === undefined), {
    message: 'input_per_mtok_usd and output_per_mtok_usd go together',
  })
  .refine((p) => p.input_per_mtok_usd !== undefined || UNIT_PRICE_FIELDS.some((f) => p[f] !== undefined), {
    message: `a price needs input_per_mtok_usd + output_per_mtok_usd or one of ${UNIT_PRICE_FIELDS.join(', ')}`,
  });

export const gatewayFileSchema = z.strictObject({
  backends: z.array(backendSchema).default([]),
  router: z
    .strictObject({
      default_backends: z.array(name).default([]),
      rules: z.array(z.strictObject({ model: z.string().min(1), backends: z.array(name).min(1) })).default([]),
    })
    .default({ default_backends: [], rules: [] }),
  virtual_keys: z.array(virtualKeySchema).default([]),
  pricing: z.record(z.string(), priceSchema).default({}),
});

export type GatewayFile = z.infer<typeof gatewayFileSchema>;
export type BackendConfig = GatewayFile['backends'][number];
export type VirtualKeyConfig = GatewayFile['virtual_keys'][number];

/**
 * Reads `gateway.json` (JSON, or YAML for .yaml/.yml), resolves `${VAR}` / `${VAR:-default}` in every
 * string from `env`, and validates it. A missing file at the default path is fine (empty config); a
 * missing file the operator named explicitly is an error. Throws ConfigError with one line per problem.
 */
export function loadGatewayFile(file: string, env: Record<string, string | undefined>, explicit: boolean): GatewayFile {
  const resolved = path.resolve(file);
  if (!existsSync(resolved)) {
    if (explicit) throw new ConfigError([`GATEWAY_CONFIG: file "${resolved}" does not exist`]);
    // A new object each time: the caller may add the UPSTREAM_BASE_URL backend to it.
    return gatewayFileSchema.parse({});
  }
  let raw: unknown;
  try {
    const text = readFileSync(resolved, 'utf8');
    raw = /\.ya?ml$/i.test(resolved) ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`GATEWAY_CONFIG: "${resolved}" cannot be parsed: ${(error as Error).message}`]);
  }
  const problems: string[] = [];
  const interpolated = interpolate(raw ?? {}, env, [], problems);
  const result = gatewayFileSchema.safeParse(interpolated);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(`${label(resolved, issue.path)}: ${issue.message}`);
  } else {
    problems.push(...crossCheck(result.data).map((p) => `${path.basename(resolved)}: ${p}`));
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return result.data!;
}

function label(file: string, at: ReadonlyArray<PropertyKey>): string {
  return `${path.basename(file)}: ${at.length ? formatPath(at) : '(root)'}`;
}

const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

function interpolate(value: unknown, env: Record<string, string | undefined>, at: PropertyKey[], problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(PLACEHOLDER, (_, variable: string, fallback: string | undefined) => {
      const found = env[variable];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push(`gateway config ${formatPath(at)}: environment variable ${variable} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, [...at, i], problems));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, [...at, k], problems)]));
  }
  return value;
}

function crossCheck(config: GatewayFile): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  config.backends.forEach((b, i) => {
    if (names.has(b.name)) problems.push(`backends[${i}].name: duplicate backend "${b.name}"`);
    names.add(b.name);
  });
  const known = (backend: string, where: string) => {
    if (!names.has(backend)) problems.push(`${where}: unknown backend "${backend}"`);
  };
  config.router.default_backends.forEach((b, i) => known(b, `router.default_backends[${i}]`));
  config.router.rules.forEach((r, i) => r.backends.forEach((b, j) => known(b, `router.rules[${i}].backends[${j}]`)));
  const ids = new Set<string>();
  const tokens = new Set<string>();
  config.virtual_keys.forEach((k, i) => {
    if (ids.has(k.id)) problems.push(`virtual_keys[${i}].id: duplicate key id "${k.id}"`);
    if (tokens.has(k.token)) problems.push(`virtual_keys[${i}].token: same token as an earlier key`);
    if (k.route !== null) known(k.route, `virtual_keys[${i}].route`);
    ids.add(k.id);
    tokens.add(k.token);
  });
  return problems;
}
