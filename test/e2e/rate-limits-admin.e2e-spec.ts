import { MemoryRateLimiter } from '../../src/storage/backends/memory/memory-rate-limiter';
import { RateLimiterStore } from '../../src/storage/ports/rate-limiter-store';
import { RateLimitsService } from '../../src/rate-limits/rate-limits.service';
import { RedisRateLimiter } from '../../src/storage/backends/redis/redis-rate-limiter';
import { VirtualKey } from '../../src/virtual-keys/domain/virtual-key';
import { BackendEnv, backendEnv } from './backends';
import { ADMIN_TOKEN, READ_TOKEN, RunningGateway, admin, adminGet, startGateway, within } from './harness';

const path = (scope: string) => `/admin/limits/${encodeURIComponent(scope)}`;

/** The rules a replica would apply to a key of tenant acme, project web (no limits of its own). */
function rulesOn(gateway: RunningGateway): Array<{ scope: string }> {
  const key = { id: 'k', tenantId: 'acme', projectId: 'web', userId: null, limits: { rpm: null, tpm: null } } as unknown as VirtualKey;
  return gateway.app.get(RateLimitsService).rulesFor(key);
}

describe.each(['sqlite', 'redis'] as const)('rate limits admin API across two replicas on %s (e2e)', (backend) => {
  let store: BackendEnv;
  let a: RunningGateway;
  let b: RunningGateway;

  beforeAll(async () => {
    store = await backendEnv(backend);
    const env = { ...store.env, ADMIN_TOKEN, ADMIN_READ_TOKEN: READ_TOKEN, AUDIT_FLUSH_MS: '50', CHANGE_FEED_POLL_MS: '50' };
    a = await startGateway(env);
    b = await startGateway(env);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await store?.cleanup();
  });

  it('sets, reads, lists, replaces and deletes a scope’s limits, audited, and visible on the other replica', async () => {
    const put = await admin(a, 'PUT', path('project:acme/web'), { rpm: 60, tpm: 100_000 });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ scope: 'project:acme/web', rpm: 60, tpm: 100_000, updated_at: expect.any(Number) });
    // At once on the replica that took the PUT, through the change feed on the other.
    expect(rulesOn(a)).toEqual([{ scope: 'project:acme/web', rpm: 60, tpm: 100_000 }]);
    await within(3000, () => rulesOn(b).length === 1);
    expect((await adminGet(b, path('project:acme/web'))).body).toMatchObject({ rpm: 60, tpm: 100_000 });

    // PUT replaces both limits: an omitted one is none.
    const replaced = await admin(a, 'PUT', path('project:acme/web'), { tpm: 5000 });
    expect(replaced.body).toMatchObject({ rpm: null, tpm: 5000 });

    for (const scope of ['tenant:acme', 'tenant:beta', 'user:acme/ann']) expect((await admin(b, 'PUT', path(scope), { rpm: 10 })).status).toBe(200);
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await adminGet(a, `/admin/limits?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      paged.push(...page.body.items.map((l: { scope: string }) => l.scope));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(paged).toEqual(['project:acme/web', 'tenant:acme', 'tenant:beta', 'user:acme/ann']);

    expect((await admin(a, 'DELETE', path('tenant:beta'))).status).toBe(204);
    expect((await adminGet(b, path('tenant:beta'))).status).toBe(404);
    await within(3000, () => rulesOn(b).some((r) => r.scope === 'tenant:acme'));
    expect((await admin(b, 'DELETE', path('tenant:beta'))).body.error.code).toBe('not_found');

    await within(5000, async () => (await adminGet(a, '/admin/audit?kind=admin.rate_limit.*')).body.items.length >= 6);
    const events = (await adminGet(a, '/admin/audit?kind=admin.rate_limit.*')).body.items as Array<{ kind: string; payload: any }>;
    const deleted = events.find((e) => e.kind === 'admin.rate_limit.delete');
    expect(deleted?.payload).toMatchObject({ actor: 'admin', scope: 'tenant:beta', before: { scope: 'tenant:beta', rpm: 10, tpm: null } });
    const replacedEvent = events.find((e) => e.kind === 'admin.rate_limit.set' && e.payload.after.tpm === 5000);
    expect(replacedEvent?.payload).toMatchObject({ scope: 'project:acme/web', before: { rpm: 60, tpm: 100_000 }, after: { rpm: null, tpm: 5000 } });
  });

  it(`counts on ${backend === 'redis' ? 'redis, shared by the replicas' : 'each replica in process'}`, () => {
    expect(a.app.get(RateLimiterStore)).toBeInstanceOf(backend === 'redis' ? RedisRateLimiter : MemoryRateLimiter);
  });

  it('refuses malformed scopes and limits with 400, and changes with the read-only token with 403', async () => {
    const bad = [
      await admin(a, 'PUT', path('team:x'), { rpm: 5 }),
      await admin(a, 'PUT', path('tenant:x'), { rpm: 0 }),
      await admin(a, 'PUT', path('tenant:x'), { rpm: 1.5 }),
      await admin(a, 'PUT', path('tenant:x'), { rpm: 5, burst: 2 }),
      await admin(a, 'PUT', path('tenant:x'), {}),
      await adminGet(a, path('project:acme')),
      await adminGet(a, '/admin/limits?limit=0'),
    ];
    for (const answer of bad) {
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('invalid_request');
    }
    expect(bad[1].body.error.param).toBe('rpm');
    expect((await adminGet(a, path('tenant:nobody'))).status).toBe(404);
    expect((await admin(a, 'PUT', path('tenant:x'), { rpm: 5 }, READ_TOKEN)).status).toBe(403);
    expect((await admin(a, 'DELETE', path('tenant:x'), undefined, READ_TOKEN)).status).toBe(403);
    expect((await adminGet(a, '/admin/limits', READ_TOKEN)).status).toBe(200);
    expect((await adminGet(a, '/admin/limits', 'wrong-token')).status).toBe(401);
  });
});
