import { VirtualKey } from '../../../virtual-keys/domain/virtual-key';

/** The stored JSON of a virtual key. */
interface VirtualKeyDoc {
  id: string;
  name: string | null;
  tokenHash: string;
  tokenPrefix: string;
  enabled: boolean;
  expiresAt: number | null;
  tenantId: string | null;
  projectId: string | null;
  userId: string | null;
  models: string[];
  /** Absent on keys written before per-key routes: every route. */
  allowedRoutes?: string[];
  limits: { rpm: number | null; tpm: number | null };
  /** Absent on keys written before the response cache. */
  cache?: { ttlSecs: number | null };
  budget: { totalTokens: number | null; totalUsdMicros: number | null };
  route: string | null;
  metadata: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

export function virtualKeyToJson(key: VirtualKey): string {
  const doc: VirtualKeyDoc = {
    id: key.id,
    name: key.name,
    tokenHash: key.tokenHash,
    tokenPrefix: key.tokenPrefix,
    enabled: key.enabled,
    expiresAt: key.expiresAt,
    tenantId: key.tenantId,
    projectId: key.projectId,
    userId: key.userId,
    models: [...key.models],
    allowedRoutes: [...key.allowedRoutes],
    limits: { rpm: key.limits.rpm, tpm: key.limits.tpm },
    cache: { ttlSecs: key.cache.ttlSecs },
    budget: { totalTokens: key.budget.totalTokens, totalUsdMicros: key.budget.totalUsdMicros },
    route: key.route,
    metadata: key.metadata,
    createdAt: key.createdAt,
    updatedAt: key.updatedAt,
  };
  return JSON.stringify(doc);
}

export function virtualKeyFromJson(json: string): VirtualKey {
  const doc = JSON.parse(json) as VirtualKeyDoc;
  return {
    id: doc.id,
    name: doc.name ?? null,
    tokenHash: doc.tokenHash,
    tokenPrefix: doc.tokenPrefix,
    enabled: doc.enabled,
    expiresAt: doc.expiresAt ?? null,
    tenantId: doc.tenantId ?? null,
    projectId: doc.projectId ?? null,
    userId: doc.userId ?? null,
    models: doc.models ?? [],
    allowedRoutes: doc.allowedRoutes ?? [],
    limits: { rpm: doc.limits?.rpm ?? null, tpm: doc.limits?.tpm ?? null },
    cache: { ttlSecs: doc.cache?.ttlSecs ?? null },
    budget: { totalTokens: doc.budget?.totalTokens ?? null, totalUsdMicros: doc.budget?.totalUsdMicros ?? null },
    route: doc.route ?? null,
    metadata: doc.metadata ?? {},
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
  };
}
