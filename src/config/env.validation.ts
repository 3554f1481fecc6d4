import { z } from 'zod';
import { BACKEND_NAMES } from '../storage/storage-backend';
import { ConfigError, formatPath } from './config-error';

/** Unset and empty variables both mean "use the default". */
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

const integer = (min: number, fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess(
    (v) => (v === '' || v === undefined ? fallback : Number(v)),
    z.number({ error: 'expected an integer' }).int('expected an integer').min(min).max(max),
  );

const boolean = (fallback: boolean) =>
  z.preprocess((v) => {
    if (v === '' || v === undefined) return fallback;
    if (typeof v !== 'string') return v;
    const s = v.toLowerCase();
    return ['true', '1', 'yes', 'on'].includes(s) ? true : ['false', '0', 'no', 'off'].includes(s) ? false : v;
  }, z.boolean({ error: 'expected true or false' }));

/** A URL with one of the given schemes. The value is never echoed back: it may hold a password. */
const url = (...protocols: string[]) =>
  optional(
    z.string().refine(
      (v) => {
        try {
          return protocols.includes(new URL(v).protocol.replace(/:$/, ''));
        } catch {
          return false;
        }
      },
      { message: `expected a URL starting with ${protocols.map((p) => `${p}://`).join(' or ')} (value not shown)` },
    ),
  );

export const DEFAULT_GATEWAY_CONFIG = './gateway.json';

/** Every environment variable the gateway reads, with its default. `.env.example` mirrors this. */
export const envSchema = z.object({
  PORT: integer(0, 8080, 65535),
  HOST: z.string().default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),
  SHUTDOWN_GRACE_MS: integer(0, 10_000, 600_000),
  BODY_LIMIT_BYTES: integer(1024, 10 * 1024 * 1024),
  REQUEST_HEADERS_TIMEOUT_MS: integer(1000, 10_000, 600_000),
  REQUEST_BODY_TIMEOUT_MS: integer(100, 30_000, 3_600_000),
  REQUEST_BODY_READS_MAX: integer(1, 256, 100_000),
  JSON_MAX_DEPTH: integer(8, 64, 1000),
  METRICS_KEY_LABELS: boolean(false),

  STORAGE_BACKEND: z.enum(['auto', ...BACKEND_NAMES]).default('auto'),
  STORAGE_FALLBACK: boolean(true),
  SQLITE_PATH: z.string().min(1).default('./data/ditto.sqlite'),
  STATE_FILE: z.string().min(1).default('./data/gateway.state.json'),
  POSTGRES_DSN: url('postgres', 'postgresql'),
  POSTGRES_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case SQL identifier').default('public'),
  PG_POOL_MIN: integer(0, 2, 1000),
  // At least 2: a scheduled job holds one connection for its advisory lock while it works on another.
  PG_POOL_MAX: integer(2, 10, 1000),
  MONGODB_URI: url('mongodb', 'mongodb+srv'),
  MONGODB_DATABASE: z.string().regex(/^[^/\\. "$]{1,63}$/, 'expected a MongoDB database name').default('ditto'),
  VALKEY_URL: url('redis', 'rediss', 'valkey', 'valkeys'),
  REDIS_URL: url('redis', 'rediss'),
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.:{}-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . : { } -').default('ditto'),
  REDIS_TIMEOUT_MS: integer(100, 10_000),
  CHANGE_FEED_POLL_MS: integer(20, 250, 60_000),

  GATEWAY_CONFIG: z.string().min(1).default(DEFAULT_GATEWAY_CONFIG),
  UPSTREAM_BASE_URL: url('http', 'https'),
  UPSTREAM_API_KEY: optional(z.string()),

  PROXY_MAX_ATTEMPTS: integer(1, 3, 10),
  PROXY_RETRY_STATUSES: z
    .string()
    .regex(/^\s*\d{3}(\s*-\s*\d{3})?(\s*,\s*\d{3}(\s*-\s*\d{3})?)*\s*$/, 'expected statuses and ranges, e.g. 429,500-504')
    .default('429,500-504'),
  AUDIT_LOG_BODIES: boolean(false),

  PROXY_CACHE_TTL_SECS: integer(0, 0, 30 * 86_400),
  PROXY_CACHE_SCOPE: z.enum(['key', 'tenant', 'global']).default('tenant'),
  PROXY_CACHE_CHARGE: boolean(false),
  PROXY_CACHE_MAX_ENTRIES: integer(1, 10_000, 10_000_000),
  PROXY_CACHE_MAX_BYTES: integer(1024, 64 * 1024 * 1024),
  PROXY_CACHE_MAX_ENTRY_BYTES: integer(1, 1024 * 1024),
  CACHE_REDIS_URL: url('redis', 'rediss', 'valkey', 'valkeys'),

  BUDGET_MODE: z.enum(['estimate', 'strict']).default('estimate'),
  BUDGET_DEFAULT_OUTPUT_TOKENS: integer(1, 1024, 10_000_000),
  RESERVATION_TTL_SECS: integer(10, 900, 7 * 86_400),
  PRICING_FILE: optional(z.string().min(1)),
  COST_UNKNOWN_MODEL: z.enum(['refuse', 'allow']).default('refuse'),

  AUDIT_FLUSH_MS: integer(10, 200, 60_000),
  AUDIT_BATCH_SIZE: integer(1, 500, 10_000),
  AUDIT_QUEUE_MAX: integer(100, 50_000, 10_000_000),
  AUDIT_QUEUE_MAX_BYTES: integer(1024 * 1024, 64 * 1024 * 1024, 16 * 1024 * 1024 * 1024),
  // At most 8 MiB: a payload's JSON may be a few times its estimate (escapes), and MongoDB stores 16 MiB per document.
  AUDIT_EVENT_MAX_BYTES: integer(16 * 1024, 1024 * 1024, 8 * 1024 * 1024),
  AUDIT_RETENTION_SECS: integer(0, 2_592_000),
  AUDIT_PRUNE_INTERVAL_SECS: integer(1, 60, 86_400),
  AUDIT_PRUNE_BATCH: integer(1, 5000, 100_000),
  AUDIT_PRUNE_MAX_BATCHES: integer(1, 10, 1000),

  ADMIN_TOKEN: optional(z.string().min(16, 'expected at least 16 characters')),
  ADMIN_READ_TOKEN: optional(z.string().min(16, 'expected at least 16 characters')),
});

export type Env = z.infer<typeof envSchema>;

/** Validates the environment; throws ConfigError listing every problem at once. */
export function validateEnv(raw: Record<string, string | undefined>): Env {
  // Empty = unset = default, for every variable (a copied .env.example leaves many empty).
  const result = envSchema.safeParse(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== '')));
  const problems = result.success ? [] : result.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
  if (result.success) {
    const env = result.data;
    if (env.PG_POOL_MIN > env.PG_POOL_MAX) problems.push('PG_POOL_MIN: must not exceed PG_POOL_MAX');
    const needs: Partial<Record<Env['STORAGE_BACKEND'], [boolean, string]>> = {
      redis: [Boolean(env.VALKEY_URL || env.REDIS_URL), 'VALKEY_URL or REDIS_URL'],
      postgres: [Boolean(env.POSTGRES_DSN), 'POSTGRES_DSN'],
      mongodb: [Boolean(env.MONGODB_URI), 'MONGODB_URI'],
    };
    const need = needs[env.STORAGE_BACKEND];
    if (need && !need[0]) problems.push(`STORAGE_BACKEND: "${env.STORAGE_BACKEND}" needs ${need[1]} to be set`);
    if (env.AUDIT_EVENT_MAX_BYTES > env.AUDIT_QUEUE_MAX_BYTES) problems.push('AUDIT_EVENT_MAX_BYTES: must not exceed AUDIT_QUEUE_MAX_BYTES');
    if (env.ADMIN_TOKEN && env.ADMIN_READ_TOKEN && env.ADMIN_TOKEN === env.ADMIN_READ_TOKEN) {
      problems.push('ADMIN_READ_TOKEN: must differ from ADMIN_TOKEN');
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return result.data!;
}
