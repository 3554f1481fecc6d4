import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApp } from '../../src/app.factory';
import { loadAppConfig } from '../../src/app-config';
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
  // Its own files (the settle journal) in a directory of its own, unless the test names one (or a SQLite
  // file, whose directory is the default): a journal one test leaves must not be replayed by another.
  const dataDir = env.DATA_DIR === undefined && env.SQLITE_PATH === undefined ? mkdtempSync(path.join(tmpdir(), 'ditto-data-')) : null;
  if (dataDir) env = { ...env, DATA_DIR: dataDir };
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
  const close = async () => {
    await app.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  return { app, url: `http://127.0.0.1:${port}`, logs, close };
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export const READ_TOKEN = 'test-read-token-0123456789';

export interface HttpResult {
  status: number;
  headers: Headers;
  body: any;
}

/** One admin call with the write token (or `token`); `body` is sent as JSON unless it is a string. */
export async function admin(
  gateway: RunningGateway,
  method: string,
  path: string,
  body?: unknown,
  token: string | null = ADMIN_TOKEN,
): Promise<HttpResult> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${gateway.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
}

export function adminGet(gateway: RunningGateway, path: string, token = ADMIN_TOKEN): Promise<HttpResult> {
  return admin(gateway, 'GET', path, undefined, token);
}

/** Polls `probe` every 10 ms until it returns true; resolves with the elapsed ms, rejects after `ms`. */
export async function within(ms: number, probe: () => boolean | Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

/** A TCP port that was free a moment ago (for a process that must come back on the same port). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
