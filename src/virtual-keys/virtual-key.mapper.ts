import { VirtualKey } from './domain/virtual-key';
import { VirtualKeyView } from './dto/virtual-key.dto';

export function toVirtualKeyView(key: VirtualKey): VirtualKeyView {
  return {
    id: key.id,
    name: key.name,
    token_prefix: key.tokenPrefix,
    enabled: key.enabled,
    expires_at: key.expiresAt,
    tenant_id: key.tenantId,
    project_id: key.projectId,
    user_id: key.userId,
    models: key.models,
    allowed_routes: key.allowedRoutes,
    limits: { rpm: key.limits.rpm, tpm: key.limits.tpm },
    cache: { ttl_secs: key.cache.ttlSecs },
    budget: { total_tokens: key.budget.totalTokens, total_usd_micros: key.budget.totalUsdMicros },
    route: key.route,
    metadata: key.metadata,
    created_at: key.createdAt,
    updated_at: key.updatedAt,
  };
}
