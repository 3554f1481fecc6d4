import { z } from 'zod';
import { CorsSettings, parseCorsOrigins } from '../common/http/cors';
import { defineConfig } from './config-slice';
import { boolean, integer } from './env-schema';

/** 64 GiB: far above any upload OpenAI takes; a bound an operator can only raise on purpose. */
const MAX_UPLOAD_LIMIT_BYTES = 64 * 1024 ** 3;

/** The HTTP server, its front door and its logs. */
export const serverConfig = defineConfig(
  'server',
  {
    PORT: integer(0, 8080, 65535),
    HOST: z.string().default('0.0.0.0'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),
    SHUTDOWN_GRACE_MS: integer(0, 10_000, 600_000),
    BODY_LIMIT_BYTES: integer(1024, 10 * 1024 * 1024),
    // OpenAI takes audio up to 25 MB and files up to 512 MB; an upload is streamed, never held whole.
    UPLOAD_LIMIT_BYTES: integer(1024, 512 * 1024 * 1024, MAX_UPLOAD_LIMIT_BYTES),
    REQUEST_HEADERS_TIMEOUT_MS: integer(1000, 10_000, 600_000),
    REQUEST_BODY_TIMEOUT_MS: integer(100, 30_000, 3_600_000),
    REQUEST_BODY_READS_MAX: integer(1, 256, 100_000),
    JSON_MAX_DEPTH: integer(8, 64, 1000),
    METRICS_KEY_LABELS: boolean(false),
    CORS_ALLOWED_ORIGINS: z.string().default(''),
    CORS_MAX_AGE_SECS: integer(0, 600, 86_400),
  },
  (env) => ({
    port: env.PORT,
    host: env.HOST,
    logLevel: env.LOG_LEVEL,
    logFormat: env.LOG_FORMAT,
    /** After SIGTERM: how long /ready answers 503 while requests are still served, before the server closes. */
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
    /** BODY_LIMIT_BYTES: the largest JSON (or any non-upload) `/v1` body. */
    bodyLimitBytes: env.BODY_LIMIT_BYTES,
    /** UPLOAD_LIMIT_BYTES: the largest multipart upload on the routes that take one. */
    uploadLimitBytes: env.UPLOAD_LIMIT_BYTES,
    /** REQUEST_HEADERS_TIMEOUT_MS: request line and headers must arrive within this time. */
    headersTimeoutMs: env.REQUEST_HEADERS_TIMEOUT_MS,
    /** REQUEST_BODY_TIMEOUT_MS: a JSON body must arrive whole, and an upload must not pause longer, than this. */
    bodyTimeoutMs: env.REQUEST_BODY_TIMEOUT_MS,
    /** REQUEST_BODY_READS_MAX: JSON bodies being received at once, in total; more are refused (503). */
    bodyReadsMax: env.REQUEST_BODY_READS_MAX,
    /** JSON_MAX_DEPTH: deeper nesting of arrays/objects in a JSON body is refused before parsing. */
    jsonMaxDepth: env.JSON_MAX_DEPTH,
    /** METRICS_KEY_LABELS: label proxy metrics with the virtual key id (one series per key). */
    metricsKeyLabels: env.METRICS_KEY_LABELS,
    /** CORS_ALLOWED_ORIGINS, CORS_MAX_AGE_SECS: browser access (docs/security.md); null = off, no CORS header at all. */
    cors: corsSettings(env.CORS_ALLOWED_ORIGINS, env.CORS_MAX_AGE_SECS),
  }),
  (env) => parseCorsOrigins(env.CORS_ALLOWED_ORIGINS).problems,
);

function corsSettings(spec: string, maxAgeSecs: number): CorsSettings | null {
  const { origins } = parseCorsOrigins(spec);
  return origins === null ? null : { origins, maxAgeSecs };
}
