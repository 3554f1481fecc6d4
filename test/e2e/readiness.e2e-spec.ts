import { ChildProcess } from 'node:child_process';
import { freePort, RunningGateway, startGateway, within } from './harness';
import { startRedis } from './own-redis';

describe('/ready follows the store (e2e, own redis-server)', () => {
  let port: number;
  let redis: ChildProcess | undefined;
  let gateway: RunningGateway;

  const ready = async () => (await fetch(`${gateway.url}/ready`)).status;

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    gateway = await startGateway({ STORAGE_BACKEND: 'redis', REDIS_URL: `redis://127.0.0.1:${port}`, STORAGE_FALLBACK: 'false', REDIS_PREFIX: 'ready-test' });
  });

  afterAll(async () => {
    await gateway?.close();
    redis?.kill('SIGKILL');
  });

  it('answers 503 while redis is down and 200 again within 5 s of its return; /health stays 200', async () => {
    expect(await ready()).toBe(200);
    const stopped = new Promise((resolve) => redis!.once('exit', resolve));
    redis!.kill('SIGKILL');
    await stopped;
    await within(3000, async () => (await ready()) === 503);
    const body = (await (await fetch(`${gateway.url}/ready`)).json()) as { error: { code: string; message: string } };
    expect(body.error).toMatchObject({ code: 'storage_unavailable' });
    expect(body.error.message).toContain('redis');
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);

    redis = await startRedis(port);
    const back = await within(5000, async () => (await ready()) === 200);
    expect(back).toBeLessThan(5000);
  }, 20_000);
});
