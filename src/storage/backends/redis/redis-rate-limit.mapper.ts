import { ScopeRateLimit } from '../../ports/scope-rate-limit.repository';

/** The stored JSON of a scope's rate limits; the scope itself is the hash field. */
interface RateLimitDoc {
  rpm: number | null;
  tpm: number | null;
  updatedAt: number;
}

export function rateLimitToJson(limit: ScopeRateLimit): string {
  const doc: RateLimitDoc = { rpm: limit.rpm, tpm: limit.tpm, updatedAt: limit.updatedAt };
  return JSON.stringify(doc);
}

export function rateLimitFromJson(scope: string, json: string): ScopeRateLimit {
  const doc = JSON.parse(json) as RateLimitDoc;
  return { scope, rpm: doc.rpm ?? null, tpm: doc.tpm ?? null, updatedAt: doc.updatedAt };
}
