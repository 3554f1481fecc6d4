import { formatPeriod, isScope, parsePeriod, scopesOf } from './scopes';

describe('budget scopes', () => {
  it('charges a key, and its tenant, project and user when it has them', () => {
    expect(scopesOf({ id: 'k', tenantId: null, projectId: 'p', userId: 'u' })).toEqual(['key:k']);
    expect(scopesOf({ id: 'k', tenantId: 't', projectId: 'p', userId: 'u' })).toEqual(['key:k', 'tenant:t', 'project:t/p', 'user:t/u']);
    expect(scopesOf({ id: 'k', tenantId: 't', projectId: null, userId: null })).toEqual(['key:k', 'tenant:t']);
  });

  it('accepts only the documented scope shapes', () => {
    for (const ok of ['key:a', 'tenant:acme', 'project:acme/web', 'user:acme/alice']) expect(isScope(ok)).toBe(true);
    for (const bad of ['team:x', 'key:', 'tenant:a/b', 'project:acme', 'user:a/b/c', 'key:a b', 'tenant:\u0000']) expect(isScope(bad)).toBe(false);
  });

  it('parses and formats reset_every windows', () => {
    expect(parsePeriod('1h')).toBe(3_600_000);
    expect(parsePeriod('30d')).toBe(30 * 86_400_000);
    expect(parsePeriod('15m')).toBe(900_000);
    for (const bad of ['0d', '1w', 'd', '1.5h', '']) expect(parsePeriod(bad)).toBeNull();
    expect(formatPeriod(7 * 86_400_000)).toBe('7d');
    expect(formatPeriod(90 * 60_000)).toBe('90m');
  });
});
