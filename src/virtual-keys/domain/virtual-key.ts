/** Key ids: no path separators, whitespace or control characters (they appear in URLs and scopes). */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_.:@-]{1,128}$/;
export const KEY_ID_FORMAT = '1-128 characters of A-Z a-z 0-9 _ . : @ -';

/** A virtual key as the domain sees it. The clear token is never stored: only its SHA-256 hex. */
export interface VirtualKey {
  id: string;
  name: string | null;
  tokenHash: string;
  /** First characters of the token (e.g. `sk-ditto-AbCd`), safe to show. */
  tokenPrefix: string;
  enabled: boolean;
  /** Epoch ms, or null for never. */
  expiresAt: number | null;
  tenantId: string | null;
  projectId: string | null;
  userId: string | null;
  /** Allow-list of model names; a trailing `*` is a prefix wildcard; empty = every model. */
  models: string[];
  /** Glob patterns over the canonical `/v1` path (virtual-keys/route-glob.ts); empty = every route. */
  allowedRoutes: string[];
  limits: { rpm: number | null; tpm: number | null };
  /** Response cache TTL in seconds: null = the global PROXY_CACHE_TTL_SECS, 0 = off for this key. */
  cache: { ttlSecs: number | null };
  budget: { totalTokens: number | null; totalUsdMicros: number | null };
  /** Backend name this key is pinned to, or null for normal routing. */
  route: string | null;
  metadata: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

export interface VirtualKeyFilter {
  tenantId?: string;
  projectId?: string;
  userId?: string;
  enabled?: boolean;
}
