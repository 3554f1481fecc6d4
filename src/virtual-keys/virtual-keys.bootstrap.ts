import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { GATEWAY } from '../config/gateway.config';
import { GatewayFile } from '../config/gateway-file';
import { VirtualKeyConfig } from '../config/gateway-file';
import { VirtualKey } from './domain/virtual-key';
import { displayPrefix, hashToken } from './domain/token';
import { VirtualKeyIndex } from './virtual-key-index';
import { VirtualKeyRepository } from '../storage/ports/virtual-key.repository';
import { VirtualKeysService } from './virtual-keys.service';

export function keyFromConfig(config: VirtualKeyConfig, now: number): VirtualKey {
  return {
    id: config.id,
    name: config.name ?? null,
    tokenHash: hashToken(config.token),
    tokenPrefix: displayPrefix(config.token),
    enabled: config.enabled,
    expiresAt: config.expires_at,
    tenantId: config.tenant_id,
    projectId: config.project_id,
    userId: config.user_id,
    models: config.models,
    allowedRoutes: config.allowed_routes,
    limits: { rpm: config.limits.rpm, tpm: config.limits.tpm },
    cache: { ttlSecs: config.cache.ttl_secs },
    budget: { totalTokens: config.budget.total_tokens, totalUsdMicros: config.budget.total_usd_micros },
    route: config.route,
    metadata: config.metadata,
    createdAt: now,
    updatedAt: now,
  };
}

/** docs/storage.md: a store that holds keys wins over gateway.json; an empty store is seeded from it. */
@Injectable()
export class VirtualKeysBootstrap implements OnApplicationBootstrap {
  private readonly logger = new Logger(VirtualKeysBootstrap.name);

  constructor(
    @Inject(GATEWAY) private readonly gateway: GatewayFile,
    private readonly keys: VirtualKeyRepository,
    private readonly index: VirtualKeyIndex,
    private readonly service: VirtualKeysService,
  ) {}

  /** Seeds first, then fills the in-memory index, so seeded keys work from the first request. */
  async onApplicationBootstrap(): Promise<void> {
    const configured = this.gateway.virtual_keys;
    if (configured.length > 0) {
      const now = Date.now();
      const seeds = configured.map((k) => keyFromConfig(k, now));
      const written = await this.keys.seedIfEmpty(seeds);
      if (written > 0) {
        for (const key of seeds) await this.service.applyBudget(key);
        this.logger.log(`store was empty: seeded ${written} virtual key(s) from the gateway config`);
      }
      else this.logger.log(`store already holds virtual keys: the ${configured.length} key(s) in the gateway config were not applied`);
    }
    await this.index.start();
    this.logger.log(`${this.index.size} virtual key(s) loaded`);
  }
}
