import { VirtualKey } from '../../virtual-keys/domain/virtual-key';

/**
 * Every request is charged to its key's scope and, where the key has them, its tenant's, project's
 * and user's (docs/budgets.md). Projects and users are named within their tenant, so a key without a
 * tenant is charged to its own scope only.
 */
export function scopesOf(key: Pick<VirtualKey, 'id' | 'tenantId' | 'projectId' | 'userId'>): string[] {
  const scopes = [`key:${key.id}`];
  if (key.tenantId !== null) {
    scopes.push(`tenant:${key.tenantId}`);
    if (key.projectId !== null) scopes.push(`project:${key.tenantId}/${key.projectId}`);
    if (key.userId !== null) scopes.push(`user:${key.tenantId}/${key.userId}`);
  }
  return scopes;
}

export const SCOPE_TYPES = ['key', 'tenant', 'project', 'user'] as const;
export type ScopeType = (typeof SCOPE_TYPES)[number];

// Like the key DTO's SCOPE_PART: no "/", whitespace or control characters.
const PART = '[^/\\s\\x00-\\x1f\\x7f]{1,128}';
const SCOPE = new RegExp(`^(?:key:${PART}|tenant:${PART}|project:${PART}/${PART}|user:${PART}/${PART})$`);

export const SCOPE_FORMAT = 'key:<id>, tenant:<t>, project:<t>/<p> or user:<t>/<u>';

export function isScope(scope: string): boolean {
  return SCOPE.test(scope);
}

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PERIOD = /^([1-9]\d{0,4})([mhd])$/;

/** `reset_every`: `<n>m`, `<n>h` or `<n>d` (`1h`, `1d`, `7d`, `30d`) → ms, or null when malformed. */
export function parsePeriod(text: string): number | null {
  const match = PERIOD.exec(text);
  return match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : null;
}

/** The inverse of parsePeriod, in the largest whole unit. */
export function formatPeriod(ms: number): string {
  for (const unit of ['d', 'h', 'm'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
