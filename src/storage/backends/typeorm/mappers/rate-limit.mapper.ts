import { ScopeRateLimit } from '../../../ports/scope-rate-limit.repository';
import { RateLimitEntity } from '../entities/rate-limit.entity';

export function toRateLimitEntity(limit: ScopeRateLimit): RateLimitEntity {
  return { scope: limit.scope, rpm: limit.rpm, tpm: limit.tpm, updatedAt: limit.updatedAt };
}

export function toScopeRateLimit(row: RateLimitEntity): ScopeRateLimit {
  return { scope: row.scope, rpm: row.rpm, tpm: row.tpm, updatedAt: row.updatedAt };
}
