import { Writable } from 'node:stream';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApp } from '../../src/app.factory';
import { loadAppConfig } from '../../src/config/app-config';
import { PinoLogger } from '../../src/common/logging/pino-logger';

export interface RunningGateway {
  app: NestFastifyApplication;
  url: string;
  /** Every log line the instance wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** Starts a gateway in this process on a free port with exactly `env` as its environment. */
export async function startGateway(env: Record<string, string | undefined>): Promise<RunningGateway> {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      done();
    },
  });
  const config = loadAppConfig({ LOG_LEVEL: 'info', ...env });
  const app = await createApp(config, new PinoLogger('info', sink));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { app, url: `http://127.0.0.1:${port}`, logs, close: () => app.close() };
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export async function adminGet(gateway: RunningGateway, path: string, token = ADMIN_TOKEN): Promise<{ status: number; body: any }> {
  const response = await fetch(`${gateway.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json() };
}
