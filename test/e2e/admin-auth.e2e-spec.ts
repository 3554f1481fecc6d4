import { ADMIN_TOKEN, READ_TOKEN, RunningGateway, admin, startGateway } from './harness';

/** Admin routes as Nest's router mapped them ("Mapped {/admin/keys/:id, GET} route" log lines). */
function mappedAdminRoutes(gateway: RunningGateway): Array<{ path: string; method: string }> {
  return gateway.logs
    .map((l) => /^Mapped \{(\S+), (\w+)\} route$/.exec(String(l.msg)))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ path: m[1], method: m[2] }))
    .filter((r) => /^\/(admin|api\/auth)(\/|$)/.test(r.path));
}

const concrete = (path: string) => path.replace(/:(\w+)/g, 'some-$1');

describe('admin authentication (e2e)', () => {
  let gateways: RunningGateway[] = [];
  const start = async (env: Record<string, string>) => {
    const g = await startGateway({ STORAGE_BACKEND: 'memory', ...env });
    gateways.push(g);
    return g;
  };
  afterEach(async () => {
    for (const g of gateways) await g.close();
    gateways = [];
  });

  it('with no admin token configured, every admin route answers 404 admin_disabled', async () => {
    const g = await start({});
    const routes = mappedAdminRoutes(g);
    expect(routes.length).toBeGreaterThanOrEqual(7);
    for (const route of routes) {
      for (const token of [null, 'anything-at-all-0123456789']) {
        const r = await admin(g, route.method, concrete(route.path), route.method === 'GET' ? undefined : {}, token);
        expect([route.path, r.status, r.body.error.code]).toEqual([route.path, 404, 'admin_disabled']);
      }
    }
  });

  it('401 without or with a wrong token, 403 for the read token on writes, 2xx with the right token', async () => {
    const g = await start({ ADMIN_TOKEN, ADMIN_READ_TOKEN: READ_TOKEN });
    for (const route of mappedAdminRoutes(g)) {
      const path = concrete(route.path);
      const body = route.method === 'GET' || route.method === 'DELETE' ? undefined : {};
      expect((await admin(g, route.method, path, body, null)).status).toBe(401);
      expect((await admin(g, route.method, path, body, 'wrong-token-0123456789')).status).toBe(401);
      expect((await admin(g, route.method, path, body, ADMIN_TOKEN.slice(0, -1))).status).toBe(401);
      const asReader = await admin(g, route.method, path, body, READ_TOKEN);
      if (route.method === 'GET') expect(asReader.status).not.toBe(403);
      else expect([route.path, asReader.status, asReader.body.error.code]).toEqual([route.path, 403, 'admin_forbidden']);
    }
    const viaHeader = await fetch(`${g.url}/admin/keys`, { headers: { 'x-admin-token': READ_TOKEN } });
    expect(viaHeader.status).toBe(200);
    const created = await admin(g, 'POST', '/admin/keys', { id: 'writer' });
    expect(created.status).toBe(201);
    expect((await admin(g, 'GET', '/admin/keys/writer', undefined, READ_TOKEN)).status).toBe(200);
    expect((await admin(g, 'DELETE', '/admin/keys/writer')).status).toBe(204);
  });

  it('/docs-json is OpenAPI 3 and documents every admin route, and no proxy route', async () => {
    const g = await start({ ADMIN_TOKEN });
    const response = await fetch(`${g.url}/docs-json`);
    expect(response.status).toBe(200);
    const doc = (await response.json()) as any;
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const route of mappedAdminRoutes(g)) {
      const operation = doc.paths[route.path.replace(/:(\w+)/g, '{$1}')]?.[route.method.toLowerCase()];
      expect([route.method, route.path, Boolean(operation)]).toEqual([route.method, route.path, true]);
      expect(operation.security).toEqual([{ bearer: [] }]);
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['401']));
    }
    expect(Object.keys(doc.paths).every((p) => /^\/(admin|api\/auth)\//.test(p))).toBe(true);
    // Every schema reference resolves.
    const refs = JSON.stringify(doc).match(/#\/components\/schemas\/[A-Za-z0-9_]+/g) ?? [];
    for (const ref of refs) expect(doc.components.schemas[ref.split('/').pop()!]).toBeDefined();
    expect((await fetch(`${g.url}/docs`)).status).toBe(200);
  });
});
