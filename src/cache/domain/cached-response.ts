import { Usage } from '../../proxy/domain/usage';

/**
 * One cached upstream answer, replayed as-is to a later identical request. Entries are shared between
 * requests and never mutated (the body buffer included): whoever serves one only reads it.
 */
export interface CachedResponse {
  status: number;
  /** The headers to replay (content-type etc.), without hop-by-hop or per-request ones. */
  headers: Record<string, string>;
  body: Buffer;
  /** The usage the upstream reported for the original request (charged on a hit when PROXY_CACHE_CHARGE). */
  usage: Usage | null;
  /** The key whose request filled the entry (purge by key id). */
  keyId: string;
  tenantId: string | null;
  model: string | null;
  /** Epoch ms. */
  storedAt: number;
  expiresAt: number;
}

/** Which entries a purge removes: those matching every field given; none given = all. */
export interface CachePurgeFilter {
  keyId?: string;
  model?: string;
}

export function matchesPurge(entry: Pick<CachedResponse, 'keyId' | 'model'>, filter: CachePurgeFilter): boolean {
  return (filter.keyId === undefined || entry.keyId === filter.keyId) && (filter.model === undefined || entry.model === filter.model);
}
