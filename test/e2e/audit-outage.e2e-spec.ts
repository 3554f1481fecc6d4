import { ChildProcess } from 'node:child_process';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { ADMIN_TOKEN, RunningGateway, admin, adminGet, freePort, startGateway, within } from './harness';
import { killRedis, startRedis } from './own-redis';

async function metric(gateway: RunningGateway, line: RegExp): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return Number(line.exec(text)?.[1] ?? NaN);
}

/**
 * The other side of "a poisoned event is dropped": while the store is down every write fails, the
 * writer splits failed batches looking for a refused event, and must still drop none of them.
 */
describe('audit while the store is down (e2e, own redis-server)', () => {
  let port: number;
  let redis: ChildProcess | undefined;
  let upstream: MockUpstream;
  let gateway: RunningGateway;

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    upstream = await startMockUpstream();
    gateway = await startGateway({
      STORAGE_BACKEND: 'redis',
      REDIS_URL: `redis://127.0.0.1:${port}`,
      REDIS_PREFIX: 'audit-outage',
      REDIS_TIMEOUT_MS: '300',
      STORAGE_FALLBACK: 'false',
      ADMIN_TOKEN,
      UPSTREAM_BASE_URL: upstream.url,
      // Batches of 8 (a full queue flushes at once): the 30 events of the outage are written in
      // batches that fail and are split, as below. With a short timer a loaded machine could flush
      // them one or two at a time, each then waiting alone for a retry (never "taken as down").
      AUDIT_FLUSH_MS: '2000',
      AUDIT_BATCH_SIZE: '8',
      AUDIT_RETENTION_SECS: '0',
    });
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
    if (redis) await killRedis(redis);
  });

  it('drops no event while every write fails, and writes them all once the store is back', async () => {
    const { token } = (await admin(gateway, 'POST', '/admin/keys', { id: 'outage' })).body;
    await killRedis(redis!);
    // Requests still end (503: the budget store is down) and each leaves a proxy.blocked event.
    const answers = await Promise.all(
      Array.from({ length: 30 }, () =>
        fetch(`${gateway.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
        }).then(async (r) => {
          await r.text();
          return { status: r.status, requestId: r.headers.get('x-ditto-request-id')! };
        }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 503));
    // Several batches have failed (split in halves, retried) by now.
    await within(10_000, async () => (await metric(gateway, /^ditto_audit_write_errors_total (\d+)$/m)) >= 8);
    expect(await metric(gateway, /^ditto_audit_queue_depth (\d+)$/m)).toBe(30);

    redis = await startRedis(port);
    await within(10_000, async () => (await metric(gateway, /^ditto_audit_queue_depth (\d+)$/m)) === 0);
    const rows = (await adminGet(gateway, '/admin/audit?kind=proxy*&limit=1000')).body.items as Array<{ request_id: string; kind: string }>;
    expect(rows.map((r) => r.request_id).sort()).toEqual(answers.map((a) => a.requestId).sort());
    for (const reason of ['rejected', 'queue_full', 'queue_bytes', 'shutdown']) {
      expect(await metric(gateway, new RegExp(`^ditto_audit_dropped_total\\{reason="${reason}"\\} (\\d+)$`, 'm'))).toBe(0);
    }
    // While down: the failure is logged per attempt, never as a refused event.
    expect(gateway.logs.some((l) => /^audit write of \d+ event\(s\) failed, will retry/.test(String(l.msg)))).toBe(true);
    expect(gateway.logs.some((l) => /refused by the store/.test(String(l.msg)))).toBe(false);
  }, 30_000);
});
