import { z } from 'zod';
import { defineConfig } from '../config/config-slice';
import { boolean, integer } from '../config/env-schema';

/** The proxy response cache: L1 in process, L2 in redis (docs/cache-and-rate-limits.md; where the L2 lives is storage's CACHE_REDIS_URL). */
export const cacheConfig = defineConfig(
  'cache',
  {
    PROXY_CACHE_TTL_SECS: integer(0, 0, 30 * 86_400),
    PROXY_CACHE_SCOPE: z.enum(['key', 'tenant', 'global']).default('tenant'),
    PROXY_CACHE_CHARGE: boolean(false),
    PROXY_CACHE_MAX_ENTRIES: integer(1, 10_000, 10_000_000),
    PROXY_CACHE_MAX_BYTES: integer(1024, 64 * 1024 * 1024),
    PROXY_CACHE_MAX_ENTRY_BYTES: integer(1, 1024 * 1024),
  },
  (env) => ({
    /** Default TTL; 0 = off, except for keys whose own `cache.ttl_secs` turns it on. */
    ttlSecs: env.PROXY_CACHE_TTL_SECS,
    /** Who may be served an entry: the same key, the same tenant (keys without a tenant: the same key), or anyone. */
    scope: env.PROXY_CACHE_SCOPE,
    /** Charge a hit its stored usage (default: hits are free). */
    charge: env.PROXY_CACHE_CHARGE,
    /** L1 bounds: entries and total bytes; responses above maxEntryBytes are never cached. */
    maxEntries: env.PROXY_CACHE_MAX_ENTRIES,
    maxBytes: env.PROXY_CACHE_MAX_BYTES,
    maxEntryBytes: env.PROXY_CACHE_MAX_ENTRY_BYTES,
  }),
);
