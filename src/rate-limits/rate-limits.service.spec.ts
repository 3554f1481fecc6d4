import { AuditService } from '../audit/audit.service';
import { ERROR_HTTP } from '../common/errors/error-status';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryChangeFeed } from '../storage/backends/memory/memory-change-feed';
import { MemoryRateLimitRepository } from '../storage/backends/memory/memory-rate-limit.repository';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { RateDecision } from './domain/rate-decision';
import { MemoryRateLimiter } from '../storage/backends/memory/memory-rate-limiter';
import { RateLimitsService, rateLimitError, rateLimitHeaders } from './rate-limits.service';

function key(over: Partial<VirtualKey> = {}): VirtualKey {
  return { id: 'k1', tenantId: null, projectId: null, userId: null, limits: { rpm: null, tpm: null }, ...over } as VirtualKey;
}

const nextTick = () => new Promise((resolve) => setImmediate(resolve));

describe('RateLimitsService', () => {
  let repository: MemoryRateLimitRepository;
  let changes: MemoryChangeFeed;
  let audit: { recordNow: jest.Mock };
  let limiter: MemoryRateLimiter;
  let services: RateLimitsService[];

  async function start(): Promise<RateLimitsService> {
    const service = new RateLimitsService(repository, changes, limiter, audit as unknown as AuditService, new MetricsService());
    await service.onModuleInit();
    services.push(service);
    return service;
  }

  beforeEach(() => {
    repository = new MemoryRateLimitRepository();
    changes = new MemoryChangeFeed();
    audit = { recordNow: jest.fn().mockResolvedValue(undefined) };
    limiter = new MemoryRateLimiter();
    services = [];
  });

  afterEach(async () => {
    for (const service of services) await service.onApplicationShutdown();
  });

  it('has no rules, and never asks the limiter, for a key without limits', async () => {
    const service = await start();
    const admit = jest.spyOn(limiter, 'admit');
    const plain = key({ tenantId: 'acme', projectId: 'web' });
    expect(service.rulesFor(plain)).toEqual([]);
    expect(await service.admit(plain, 500)).toMatchObject({ ok: true, scope: null, limitRequests: null, limitTokens: null });
    await service.adjust([], 100, Date.now());
    expect(admit).not.toHaveBeenCalled();
  });

  it("combines the key's own limits with the limits of its scopes, the tighter one where both apply", async () => {
    const service = await start();
    expect(service.rulesFor(key({ limits: { rpm: 60, tpm: null } }))).toEqual([{ scope: 'key:k1', rpm: 60, tpm: null }]);
    await service.set('tenant:acme', { rpm: 600 }, 'admin');
    await service.set('project:acme/web', { tpm: 10_000 }, 'admin');
    await service.set('project:other/web', { rpm: 1 }, 'admin');
    await service.set('key:k1', { rpm: 100, tpm: 5000 }, 'admin');
    expect(service.rulesFor(key({ tenantId: 'acme', projectId: 'web', userId: 'u', limits: { rpm: 60, tpm: null } }))).toEqual([
      { scope: 'key:k1', rpm: 60, tpm: 5000 },
      { scope: 'tenant:acme', rpm: 600, tpm: null },
      { scope: 'project:acme/web', rpm: null, tpm: 10_000 },
    ]);
    // A key without its own limits gets the limit set on its key scope; one without a tenant, no tenant's.
    expect(service.rulesFor(key({ projectId: 'web' }))).toEqual([{ scope: 'key:k1', rpm: 100, tpm: 5000 }]);
  });

  it('loads every stored scope limit at start, page by page', async () => {
    for (let i = 0; i < 2500; i++) await repository.put({ scope: `tenant:t${i}`, rpm: i + 1, tpm: null, updatedAt: 1 });
    const service = await start();
    expect(service.rulesFor(key({ tenantId: 't2499' }))).toEqual([{ scope: 'tenant:t2499', rpm: 2500, tpm: null }]);
  });

  it('applies a change at once here, on the other replicas through the change feed, and audits it', async () => {
    const a = await start();
    const b = await start();
    const tenantKey = key({ tenantId: 'acme' });
    const put = await a.set('tenant:acme', { rpm: 5, tpm: null }, 'admin');
    expect(put).toMatchObject({ scope: 'tenant:acme', rpm: 5, tpm: null });
    expect(a.rulesFor(tenantKey)).toEqual([{ scope: 'tenant:acme', rpm: 5, tpm: null }]);
    await nextTick();
    expect(b.rulesFor(tenantKey)).toEqual([{ scope: 'tenant:acme', rpm: 5, tpm: null }]);
    expect(audit.recordNow).toHaveBeenCalledWith({
      kind: 'admin.rate_limit.set',
      tenantId: 'acme',
      payload: { actor: 'admin', scope: 'tenant:acme', before: null, after: { scope: 'tenant:acme', rpm: 5, tpm: null, updated_at: put.updatedAt } },
    });

    await a.remove('tenant:acme', 'admin');
    await nextTick();
    expect(b.rulesFor(tenantKey)).toEqual([]);
    expect(audit.recordNow).toHaveBeenLastCalledWith(expect.objectContaining({ kind: 'admin.rate_limit.delete', tenantId: 'acme' }));
    await expect(a.get('tenant:acme')).rejects.toMatchObject({ code: ErrorCode.NotFound });
    await expect(a.remove('tenant:acme', 'admin')).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('refuses malformed scopes and a PUT without any limit', async () => {
    const service = await start();
    await expect(service.set('acme', { rpm: 5 }, 'admin')).rejects.toMatchObject({ code: ErrorCode.InvalidRequest, param: 'scope' });
    await expect(service.get('project:acme')).rejects.toMatchObject({ code: ErrorCode.InvalidRequest });
    await expect(service.set('tenant:acme', { rpm: null, tpm: null }, 'admin')).rejects.toMatchObject({ code: ErrorCode.InvalidRequest });
    expect(audit.recordNow).not.toHaveBeenCalled();
  });

  it('counts admissions in the limiter and reports refusals', async () => {
    const service = await start();
    const limited = key({ limits: { rpm: 1, tpm: null } });
    expect((await service.admit(limited, 10)).ok).toBe(true);
    expect(await service.admit(limited, 10)).toMatchObject({ ok: false, scope: 'key:k1', kind: 'requests' });
  });

  it('answers 503 storage_unavailable when the limiter fails, and never fails a correction', async () => {
    const service = await start();
    jest.spyOn(limiter, 'admit').mockRejectedValue(new Error('ECONNREFUSED'));
    jest.spyOn(limiter, 'adjustTokens').mockRejectedValue(new Error('ECONNREFUSED'));
    await expect(service.admit(key({ limits: { rpm: 1, tpm: null } }), 1)).rejects.toMatchObject({ code: ErrorCode.StorageUnavailable });
    await expect(service.adjust([{ scope: 'key:k1', rpm: 1, tpm: null }], -5, Date.now())).resolves.toBeUndefined();
  });
});

describe('rate-limit answers', () => {
  const admitted: RateDecision = {
    ok: true,
    scope: null,
    kind: null,
    retryAfterMs: 0,
    limitRequests: 60,
    remainingRequests: 59,
    limitTokens: null,
    remainingTokens: null,
  };

  it("sends OpenAI's headers only for the limits that exist", () => {
    expect(rateLimitHeaders(admitted)).toEqual({ 'x-ratelimit-limit-requests': '60', 'x-ratelimit-remaining-requests': '59' });
    expect(rateLimitHeaders({ ...admitted, limitRequests: null, remainingRequests: null, limitTokens: 1000, remainingTokens: 0 })).toEqual({
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '0',
    });
  });

  it('adds retry-after in whole seconds, rounded up and at least 1, on a refusal', () => {
    const refused = { ...admitted, ok: false, scope: 'tenant:acme', kind: 'requests' as const, remainingRequests: 0 };
    expect(rateLimitHeaders({ ...refused, retryAfterMs: 1001 })).toMatchObject({ 'retry-after': '2', 'retry-after-ms': '1001', 'x-ratelimit-remaining-requests': '0' });
    expect(rateLimitHeaders({ ...refused, retryAfterMs: 0 })['retry-after']).toBe('1');
    const never = rateLimitHeaders({ ...refused, kind: 'tokens', retryAfterMs: Infinity });
    expect(never['retry-after']).toBeUndefined();
    expect(never['x-should-retry']).toBe('false');
  });

  it('is a 429 rate_limited naming the scope and the limit, typed like OpenAI', () => {
    const requests = rateLimitError({ ...admitted, ok: false, scope: 'tenant:acme', kind: 'requests', retryAfterMs: 4200, remainingRequests: 0 });
    expect(requests).toBeInstanceOf(GatewayError);
    expect(requests.code).toBe(ErrorCode.RateLimited);
    expect(ERROR_HTTP[requests.code].status).toBe(429);
    expect(requests.type).toBe('requests');
    expect(requests.message).toBe('Rate limit reached for tenant:acme: 60 requests per minute. Please try again in 5s.');

    const tokens = rateLimitError({ ...admitted, ok: false, scope: 'key:k1', kind: 'tokens', retryAfterMs: Infinity, limitTokens: 4000, remainingTokens: 4000 });
    expect(tokens.type).toBe('tokens');
    expect(tokens.message).toMatch(/^Rate limit reached for key:k1: 4000 tokens per minute\. This request alone .* cannot be admitted/);
  });
});
