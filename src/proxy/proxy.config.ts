import { z } from 'zod';
import { defineConfig } from '../config/config-slice';
import { boolean, integer } from '../config/env-schema';
import { MAX_REQUEST_TOKENS } from '../common/numeric-limits';

/** Retries and fallback across backends, what the proxy keeps of bodies, and whether it compresses answers. */
export const proxyConfig = defineConfig(
  'proxy',
  {
    PROXY_MAX_ATTEMPTS: integer(1, 3, 10),
    PROXY_RETRY_STATUSES: z
      .string()
      .regex(/^\s*\d{3}(\s*-\s*\d{3})?(\s*,\s*\d{3}(\s*-\s*\d{3})?)*\s*$/, 'expected statuses and ranges, e.g. 429,500-504')
      .default('429,500-504'),
    AUDIT_LOG_BODIES: boolean(false),
    COMPRESSION: z.enum(['on', 'off']).default('off'),
    REALTIME_IDLE_TIMEOUT_MS: integer(1000, 600_000, 86_400_000),
    REALTIME_RESPONSE_RESERVE_TOKENS: integer(1, 4096, MAX_REQUEST_TOKENS),
    REALTIME_MAX_MESSAGE_BYTES: integer(1024, 16 * 1024 * 1024, 100 * 1024 * 1024),
  },
  (env) => ({
    maxAttempts: env.PROXY_MAX_ATTEMPTS,
    retryStatuses: parseStatuses(env.PROXY_RETRY_STATUSES) as ReadonlySet<number>,
    /** AUDIT_LOG_BODIES: keep request and response bodies in `proxy` audit events. */
    logBodies: env.AUDIT_LOG_BODIES,
    /** COMPRESSION=on: compress JSON and SSE answers the upstream sent uncompressed, when the client accepts gzip or br. */
    compress: env.COMPRESSION === 'on',
    realtime: {
      /** REALTIME_IDLE_TIMEOUT_MS: a session with no message either way for this long is closed (1001). */
      idleTimeoutMs: env.REALTIME_IDLE_TIMEOUT_MS,
      /** REALTIME_RESPONSE_RESERVE_TOKENS: tokens held on the budgets for the session's next response. */
      reserveTokens: env.REALTIME_RESPONSE_RESERVE_TOKENS,
      /** REALTIME_MAX_MESSAGE_BYTES: the largest message relayed either way (larger: the session is closed, 1009). */
      maxMessageBytes: env.REALTIME_MAX_MESSAGE_BYTES,
    },
  }),
);

/** `429,500-504` → {429, 500, 501, 502, 503, 504}. */
function parseStatuses(spec: string): Set<number> {
  const statuses = new Set<number>();
  for (const part of spec.split(',')) {
    const [from, to = from] = part.split('-').map((s) => Number(s.trim()));
    for (let status = from; status <= to; status++) statuses.add(status);
  }
  return statuses;
}
