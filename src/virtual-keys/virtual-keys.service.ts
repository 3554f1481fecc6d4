import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { AdminActor } from '../admin/admin-auth.guard';
import { CostLimits, TokenLimits } from '../ledger/scope-limits';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { Page } from '../common/page';
import { ChangeFeed } from '../storage/ports/change-feed';
import { VirtualKey, VirtualKeyFilter } from './domain/virtual-key';
import { displayPrefix, generateToken, hashToken } from './domain/token';
import { CreateVirtualKeyDto, UpdateVirtualKeyDto } from './dto/virtual-key.dto';
import { VIRTUAL_KEY_ENTITY, VirtualKeyIndex } from './virtual-key-index';
import { VirtualKeyRepository } from '../storage/ports/virtual-key.repository';

const METADATA_MAX_BYTES = 16 * 1024;

/** Field names as the admin API spells them, for audit `changed` lists. */
const WIRE_NAMES: Record<string, string> = {
  name: 'name', enabled: 'enabled', expiresAt: 'expires_at', tenantId: 'tenant_id', projectId: 'project_id',
  userId: 'user_id', models: 'models', allowedRoutes: 'allowed_routes', limits: 'limits', cache: 'cache', budget: 'budget', route: 'route', metadata: 'metadata',
};

/** Admin operations on virtual keys. Every mutation is announced on the change feed and audited. */
@Injectable()
export class VirtualKeysService {
  constructor(
    private readonly keys: VirtualKeyRepository,
    private readonly changes: ChangeFeed,
    private readonly index: VirtualKeyIndex,
    private readonly audit: AuditService,
    private readonly tokenLimits: TokenLimits,
    private readonly costLimits: CostLimits,
  ) {}

  async create(dto: CreateVirtualKeyDto, actor: AdminActor): Promise<{ key: VirtualKey; token: string }> {
    const now = Date.now();
    if (dto.expires_at != null && dto.expires_at <= now) {
      throw new GatewayError(ErrorCode.InvalidRequest, 'expires_at is in the past', 'expires_at');
    }
    const token = dto.token ?? generateToken();
    const key: VirtualKey = this.applyPatch(
      {
        id: dto.id ?? `vk_${generateToken().slice(-16)}`,
        name: null,
        tokenHash: hashToken(token),
        tokenPrefix: displayPrefix(token),
        enabled: true,
        expiresAt: null,
        tenantId: null,
        projectId: null,
        userId: null,
        models: [],
        allowedRoutes: [],
        limits: { rpm: null, tpm: null },
        cache: { ttlSecs: null },
        budget: { totalTokens: null, totalUsdMicros: null },
        route: null,
        metadata: {},
        createdAt: now,
        updatedAt: now,
      },
      dto,
    );
    await this.keys.create(key);
    await this.applyBudget(key);
    await this.announce(key.id, 'admin.key.create', actor, { after: auditView(key) }, key.tenantId);
    return { key, token };
  }

  list(filter: VirtualKeyFilter, limit: number, cursor: string | null): Promise<Page<VirtualKey>> {
    return this.keys.list(filter, limit, cursor);
  }

  async get(id: string): Promise<VirtualKey> {
    const key = await this.keys.get(id);
    if (!key) throw new GatewayError(ErrorCode.NotFound, `virtual key '${id}' not found`);
    return key;
  }

  async update(id: string, dto: UpdateVirtualKeyDto, actor: AdminActor): Promise<VirtualKey> {
    const before = await this.get(id);
    const after = { ...this.applyPatch(before, dto), updatedAt: Date.now() };
    if (!(await this.keys.update(after))) throw new GatewayError(ErrorCode.NotFound, `virtual key '${id}' not found`);
    await this.applyBudget(after);
    const changed = Object.keys(WIRE_NAMES).filter(
      (field) => JSON.stringify(before[field as keyof VirtualKey]) !== JSON.stringify(after[field as keyof VirtualKey]),
    );
    await this.announce(id, 'admin.key.update', actor, {
      changed: changed.map((f) => WIRE_NAMES[f]),
      before: auditView(before),
      after: auditView(after),
    }, after.tenantId);
    return after;
  }

  async delete(id: string, actor: AdminActor): Promise<void> {
    const before = await this.get(id);
    if (!(await this.keys.delete(id))) throw new GatewayError(ErrorCode.NotFound, `virtual key '${id}' not found`);
    await this.announce(id, 'admin.key.delete', actor, { before: auditView(before) }, before.tenantId);
  }

  async rotate(id: string, actor: AdminActor): Promise<{ key: VirtualKey; token: string }> {
    const before = await this.get(id);
    const token = generateToken();
    const key = { ...before, tokenHash: hashToken(token), tokenPrefix: displayPrefix(token), updatedAt: Date.now() };
    if (!(await this.keys.update(key))) throw new GatewayError(ErrorCode.NotFound, `virtual key '${id}' not found`);
    await this.announce(id, 'admin.key.rotate', actor, { token_prefix_before: before.tokenPrefix, token_prefix_after: key.tokenPrefix }, key.tenantId);
    return { key, token };
  }

  /**
   * Publishes the change (other replicas reload the key), applies it to this replica's index at once
   * (so the caller's next request already sees it), and writes the admin audit event.
   */
  private async announce(id: string, kind: string, actor: AdminActor, payload: Record<string, unknown>, tenantId: string | null): Promise<void> {
    await this.index.refresh(id);
    await this.changes.publish({ entity: VIRTUAL_KEY_ENTITY, id });
    await this.audit.recordNow({ kind, keyId: id, tenantId, payload: { actor, key_id: id, ...payload } });
  }

  /** The key's own budget is the limit of its `key:<id>` scope on both ledgers. */
  async applyBudget(key: VirtualKey): Promise<void> {
    await Promise.all([
      this.tokenLimits.applyKeyLimit(key.id, key.budget.totalTokens),
      this.costLimits.applyKeyLimit(key.id, key.budget.totalUsdMicros),
    ]);
  }

  private applyPatch(key: VirtualKey, dto: UpdateVirtualKeyDto): VirtualKey {
    if (dto.metadata !== undefined && Buffer.byteLength(JSON.stringify(dto.metadata)) > METADATA_MAX_BYTES) {
      throw new GatewayError(ErrorCode.InvalidRequest, `metadata is larger than ${METADATA_MAX_BYTES} bytes`, 'metadata');
    }
    const pick = <T>(value: T | undefined, current: T): T => (value === undefined ? current : value);
    return {
      ...key,
      name: pick(dto.name, key.name),
      enabled: dto.enabled ?? key.enabled,
      expiresAt: pick(dto.expires_at, key.expiresAt),
      tenantId: pick(dto.tenant_id, key.tenantId),
      projectId: pick(dto.project_id, key.projectId),
      userId: pick(dto.user_id, key.userId),
      models: dto.models ?? key.models,
      allowedRoutes: dto.allowed_routes ?? key.allowedRoutes,
      limits: dto.limits
        ? { rpm: pick(dto.limits.rpm, key.limits.rpm), tpm: pick(dto.limits.tpm, key.limits.tpm) }
        : key.limits,
      cache: dto.cache ? { ttlSecs: pick(dto.cache.ttl_secs, key.cache.ttlSecs) } : key.cache,
      budget: dto.budget
        ? {
            totalTokens: pick(dto.budget.total_tokens, key.budget.totalTokens),
            totalUsdMicros: pick(dto.budget.total_usd_micros, key.budget.totalUsdMicros),
          }
        : key.budget,
      route: pick(dto.route, key.route),
      metadata: dto.metadata ?? key.metadata,
    };
  }
}

/** A key for audit payloads: never the token or its hash. */
function auditView(key: VirtualKey): Record<string, unknown> {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { tokenHash, ...rest } = key;
  return rest;
}
