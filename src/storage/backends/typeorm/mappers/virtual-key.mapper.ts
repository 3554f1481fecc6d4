import { VirtualKey } from '../../../../virtual-keys/domain/virtual-key';
import { VirtualKeyEntity } from '../entities/virtual-key.entity';

export function toVirtualKeyEntity(key: VirtualKey): VirtualKeyEntity {
  return {
    id: key.id,
    name: key.name,
    tokenHash: key.tokenHash,
    tokenPrefix: key.tokenPrefix,
    enabled: key.enabled,
    expiresAt: key.expiresAt,
    tenantId: key.tenantId,
    projectId: key.projectId,
    userId: key.userId,
    models: key.models,
    allowedRoutes: key.allowedRoutes,
    limitRpm: key.limits.rpm,
    limitTpm: key.limits.tpm,
    cacheTtlSecs: key.cache.ttlSecs,
    budgetTotalTokens: key.budget.totalTokens,
    budgetTotalUsdMicros: key.budget.totalUsdMicros,
    route: key.route,
    metadata: key.metadata,
    createdAt: key.createdAt,
    updatedAt: key.updatedAt,
  };
}

export function toVirtualKey(row: VirtualKeyEntity): VirtualKey {
  return {
    id: row.id,
    name: row.name,
    tokenHash: row.tokenHash,
    tokenPrefix: row.tokenPrefix,
    enabled: row.enabled,
    expiresAt: row.expiresAt,
    tenantId: row.tenantId,
    projectId: row.projectId,
    userId: row.userId,
    models: row.models,
    allowedRoutes: row.allowedRoutes,
    limits: { rpm: row.limitRpm, tpm: row.limitTpm },
    cache: { ttlSecs: row.cacheTtlSecs },
    budget: { totalTokens: row.budgetTotalTokens, totalUsdMicros: row.budgetTotalUsdMicros },
    route: row.route,
    metadata: row.metadata as Record<string, unknown>,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}
