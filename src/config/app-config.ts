import * as path from 'node:path';
import { PricingTable, loadPricing } from '../costs/pricing';
import { StorageOptions } from '../storage/storage-backend';
import { StorageSelectionInput } from '../storage/storage-selection';
import { ConfigError } from './config-error';
import { DEFAULT_GATEWAY_CONFIG, Env, validateEnv } from './env.validation';
import { BackendConfig, GatewayFile, loadGatewayFile } from './gateway-file';

export interface ServerConfig {
  port: number;
  host: string;
  bodyLimitBytes: number;
  /** REQUEST_HEADERS_TIMEOUT_MS: request line and headers must arrive within this time. */
  headersTimeoutMs: number;
  /** REQUEST_BODY_TIMEOUT_MS: a JSON body must arrive whole, and an upload must not pause longer, than this. */
  bodyTimeoutMs: number;
  /** REQUEST_BODY_READS_MAX: JSON bodies being received at once, in total; more are refused (503). */
  bodyReadsMax: number;
  /** JSON_MAX_DEPTH: deeper nesting of arrays/objects in a JSON body is refused before parsing. */
  jsonMaxDepth: number;
  logLevel: Env['LOG_LEVEL'];
  logFormat: Env['LOG_FORMAT'];
  /** METRICS_KEY_LABELS: label proxy metrics with the virtual key id (one series per key). */
  metricsKeyLabels: boolean;
  /** After SIGTERM: how long /ready answers 503 while requests are still served, before the server closes. */
  shutdownGraceMs: number;
}

export interface StorageConfig {
  selection: StorageSelectionInput;
  options: StorageOptions;
}

export interface ProxyConfig {
  maxAttempts: number;
  retryStatuses: ReadonlySet<number>;
  /** AUDIT_LOG_BODIES: keep request and response bodies in `proxy` audit events. */
  logBodies: boolean;
}

export interface BudgetConfig {
  /** `strict` also caps each request's output tokens to what its scopes have left. */
  mode: 'estimate' | 'strict';
  /** Output tokens reserved for a request that does not set max_tokens (or its API's equivalent). */
  defaultOutputTokens: number;
  /** Reservations older than this are released by the reaper (a crashed replica's, or a lost settle). */
  reservationTtlMs: number;
  /** What to do with an unpriced model when a cost limit applies: refuse (cost_unknown_model) or charge 0. */
  unknownModelCost: 'refuse' | 'allow';
}

export interface AuditConfig {
  flushMs: number;
  batchSize: number;
  /** Bounds of the write queue: events, and their estimated bytes (AUDIT_QUEUE_MAX_BYTES). */
  queueMax: number;
  queueMaxBytes: number;
  /** Estimated bytes of one event's payload at most; longer strings are cut, the rest left out. */
  eventMaxBytes: number;
  /** Rows older than this are deleted by the prune job; 0 disables the job. */
  retentionSecs: number;
  pruneIntervalSecs: number;
  /** Rows per delete statement, and batches per prune tick. */
  pruneBatch: number;
  pruneMaxBatches: number;
}

/** The proxy response cache (L1 in process, L2 redis). */
export interface CacheConfig {
  /** PROXY_CACHE_TTL_SECS: default TTL; 0 = off, except for keys whose own `cache.ttl_secs` turns it on. */
  ttlSecs: number;
  /** Who may be served an entry: the same key, the same tenant (keys without a tenant: the same key), or anyone. */
  scope: 'key' | 'tenant' | 'global';
  /** PROXY_CACHE_CHARGE: charge a hit its stored usage (default: hits are free). */
  charge: boolean;
  /** L1 bounds: entries and total bytes; responses above maxEntryBytes are never cached. */
  maxEntries: number;
  maxBytes: number;
  maxEntryBytes: number;
  /** L2: CACHE_REDIS_URL, else the store's redis when STORAGE is redis, else none (L1 only). */
  redisUrl: string | null;
  /** Key prefix of the L2 entries (REDIS_PREFIX + `:cache`). */
  redisPrefix: string;
}

export interface AdminConfig {
  /** Read+write token, or null. With neither token the admin API is off (404 admin_disabled). */
  token: string | null;
  /** GET/HEAD-only token, or null. */
  readToken: string | null;
}

/**
 * The validated configuration, split into typed namespaces. Built once from an env map (process.env
 * plus `.env` in main.ts; an explicit map in tests, so two app instances in one process can differ)
 * and injected as a value: nothing outside `config/` reads process.env.
 */
export class AppConfig {
  constructor(
    readonly server: ServerConfig,
    readonly storage: StorageConfig,
    readonly admin: AdminConfig,
    readonly gateway: GatewayFile,
    readonly proxy: ProxyConfig,
    readonly audit: AuditConfig,
    readonly budgets: BudgetConfig,
    readonly pricing: PricingTable,
    readonly cache: CacheConfig,
  ) {}
}

export function loadAppConfig(raw: Record<string, string | undefined>): AppConfig {
  const env = validateEnv(raw);
  // Only a file other than the default must exist (a copied .env.example names the default).
  const gateway = loadGatewayFile(env.GATEWAY_CONFIG, raw, path.resolve(env.GATEWAY_CONFIG) !== path.resolve(DEFAULT_GATEWAY_CONFIG));
  if (env.UPSTREAM_BASE_URL && gateway.backends.length === 0) {
    gateway.backends = [defaultBackend(env.UPSTREAM_BASE_URL, env.UPSTREAM_API_KEY)];
    gateway.router.default_backends = ['default'];
  } else if (env.UPSTREAM_BASE_URL) {
    throw new ConfigError(['UPSTREAM_BASE_URL: set together with backends in the gateway config; use one or the other']);
  }
  return new AppConfig(
    {
      port: env.PORT,
      host: env.HOST,
      bodyLimitBytes: env.BODY_LIMIT_BYTES,
      headersTimeoutMs: env.REQUEST_HEADERS_TIMEOUT_MS,
      bodyTimeoutMs: env.REQUEST_BODY_TIMEOUT_MS,
      bodyReadsMax: env.REQUEST_BODY_READS_MAX,
      jsonMaxDepth: env.JSON_MAX_DEPTH,
      logLevel: env.LOG_LEVEL,
      logFormat: env.LOG_FORMAT,
      metricsKeyLabels: env.METRICS_KEY_LABELS,
      shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
    },
    {
      selection: {
        forced: env.STORAGE_BACKEND === 'auto' ? null : env.STORAGE_BACKEND,
        fallback: env.STORAGE_FALLBACK,
        redisUrlVariable: env.VALKEY_URL ? 'VALKEY_URL' : env.REDIS_URL ? 'REDIS_URL' : null,
        postgres: Boolean(env.POSTGRES_DSN),
        mongodb: Boolean(env.MONGODB_URI),
      },
      options: {
        sqlite: { path: env.SQLITE_PATH },
        state: { file: env.STATE_FILE },
        postgres: { dsn: env.POSTGRES_DSN ?? '', schema: env.POSTGRES_SCHEMA, poolMin: env.PG_POOL_MIN, poolMax: env.PG_POOL_MAX },
        mongodb: { uri: env.MONGODB_URI ?? '', database: env.MONGODB_DATABASE },
        redis: { url: redisScheme(env.VALKEY_URL ?? env.REDIS_URL ?? ''), prefix: env.REDIS_PREFIX, timeoutMs: env.REDIS_TIMEOUT_MS },
        changePollMs: env.CHANGE_FEED_POLL_MS,
      },
    },
    { token: env.ADMIN_TOKEN ?? null, readToken: env.ADMIN_READ_TOKEN ?? null },
    gateway,
    { maxAttempts: env.PROXY_MAX_ATTEMPTS, retryStatuses: parseStatuses(env.PROXY_RETRY_STATUSES), logBodies: env.AUDIT_LOG_BODIES },
    {
      flushMs: env.AUDIT_FLUSH_MS,
      batchSize: env.AUDIT_BATCH_SIZE,
      queueMax: env.AUDIT_QUEUE_MAX,
      queueMaxBytes: env.AUDIT_QUEUE_MAX_BYTES,
      eventMaxBytes: env.AUDIT_EVENT_MAX_BYTES,
      retentionSecs: env.AUDIT_RETENTION_SECS,
      pruneIntervalSecs: env.AUDIT_PRUNE_INTERVAL_SECS,
      pruneBatch: env.AUDIT_PRUNE_BATCH,
      pruneMaxBatches: env.AUDIT_PRUNE_MAX_BATCHES,
    },
    {
      mode: env.BUDGET_MODE,
      defaultOutputTokens: env.BUDGET_DEFAULT_OUTPUT_TOKENS,
      reservationTtlMs: env.RESERVATION_TTL_SECS * 1000,
      unknownModelCost: env.COST_UNKNOWN_MODEL,
    },
    loadPricing(gateway.pricing, env.PRICING_FILE),
    {
      ttlSecs: env.PROXY_CACHE_TTL_SECS,
      scope: env.PROXY_CACHE_SCOPE,
      charge: env.PROXY_CACHE_CHARGE,
      maxEntries: env.PROXY_CACHE_MAX_ENTRIES,
      maxBytes: env.PROXY_CACHE_MAX_BYTES,
      maxEntryBytes: env.PROXY_CACHE_MAX_ENTRY_BYTES,
      redisUrl: env.CACHE_REDIS_URL ? redisScheme(env.CACHE_REDIS_URL) : null,
      redisPrefix: `${env.REDIS_PREFIX}:cache`,
    },
  );
}

/** Valkey speaks the Redis protocol; ioredis only knows the redis schemes. */
function redisScheme(url: string): string {
  return url.replace(/^valkey(s?):/, 'redis$1:');
}

function defaultBackend(baseUrl: string, apiKey: string | undefined): BackendConfig {
  return { name: 'default', base_url: baseUrl, api_key: apiKey, timeout_ms: 300_000, weight: 1, model_map: {}, pass_client_headers: false };
}

/** `429,500-504` → {429, 500, 501, 502, 503, 504}. */
function parseStatuses(spec: string): Set<number> {
  const statuses = new Set<number>();
  for (const part of spec.split(',')) {
    const [from, to = from] = part.split('-').map((s) => Number(s.trim()));
    for (let status = from; status <= to; status++) statuses.add(status);
  }
  return statuses;
}
