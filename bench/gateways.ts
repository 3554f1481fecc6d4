/**
 * What the proxy benches share: the processes they start (mock upstreams, bare proxies, gateways of this
 * build or of an earlier one), the gateway configuration with a budgeted virtual key, the request
 * bodies, and the removal of what the gateways stored.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { Client } from 'pg';
import { onCore } from './load-generator';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_DSN = process.env.TEST_POSTGRES_DSN ?? 'postgres://postgres@127.0.0.1:5432/ditto_test';
/** The budgeted virtual key of every gateway target. */
export const KEY = `sk-ditto-bench${randomUUID().replace(/-/g, '')}`;
export const PATH = '/v1/chat/completions';
export const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], max_tokens: 16 });
/** 20 events: the role, 16 tokens, the finish, the usage and `[DONE]`. Routed to the streaming mock by its model. */
export const STREAM_BODY = JSON.stringify({
  model: 'gpt-4o',
  messages: [{ role: 'user', content: 'Stream a hello to the benchmark.' }],
  max_tokens: 16,
  stream: true,
  stream_options: { include_usage: true },
});

export interface Target {
  name: string;
  /** Origin of the non-streaming scenario's server and of the streaming one's (the same gateway; two bare proxies). */
  origin: string;
  streamOrigin: string;
  auth: boolean;
  /** The server's process (the gateway's, or the non-streaming bare proxy's). */
  pid: number;
}

const children: ChildProcess[] = [];
/** What the gateways stored: a Redis prefix and a PostgreSQL schema each (SQLite files live in the run's directory). */
const stores: Array<{ prefix: string; schema: string }> = [];

/**
 * Starts `[wrapper] node [nodeOptions] <script> [args]` (the script relative to dist/bench, or absolute; `wrapper` a command
 * that runs node, such as valgrind) on `core`, resolving with the first match of `ready` in its output, the process and its
 * id; from then on its output is drained unread.
 */
export function start(
  core: string | null,
  script: string,
  args: string[],
  env: Record<string, string> = {},
  ready: RegExp = /(\S+)\n/,
  nodeOptions: string[] = [],
  wrapper: string[] = [],
): Promise<{ value: string; pid: number; child: ChildProcess }> {
  const [program, ...programArgs] = [...wrapper, process.execPath];
  const [command, argv] = onCore(core, program, [...programArgs, ...nodeOptions, path.resolve(__dirname, script), ...args]);
  const child = spawn(command, argv, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const match = ready.exec(out);
      if (!match) return;
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      // Under taskset the child is taskset's exec of node: the same process.
      resolve({ value: match[1], pid: child.pid!, child });
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${out.slice(-500)}`)));
  });
}

/** The mock upstreams (`mock` for chat, `mock-stream` for SSE) and a gateway.json that routes to them, with the budgeted key. */
export async function startUpstreams(core: string | null, dir: string, chunkDelayMs: number): Promise<{ upstream: string; streamUpstream: string }> {
  const upstream = (await start(core, 'mock-upstream-server.js', [JSON.stringify({ recordRequests: false })])).value;
  const streamUpstream = (await start(core, 'mock-upstream-server.js', [JSON.stringify({ recordRequests: false, chunkDelayMs, replyTokens: 16 })])).value;
  writeFileSync(
    path.join(dir, 'gateway.json'),
    JSON.stringify({
      backends: [
        { name: 'mock', base_url: upstream },
        { name: 'mock-stream', base_url: streamUpstream },
      ],
      router: { default_backends: ['mock'], rules: [{ model: 'gpt-4o', backends: ['mock-stream'] }] },
      // Budgets on: limits far above what a run can spend, so nothing is refused but every request is
      // governed (key + tenant scope, tokens and cost).
      virtual_keys: [{ id: 'bench', token: KEY, tenant_id: 'bench', budget: { total_tokens: 1e15, total_usd_micros: 1e15 } }],
      pricing: {
        'gpt-4o-mini': { input_per_mtok_usd: 0.15, output_per_mtok_usd: 0.6, cached_input_per_mtok_usd: 0.075 },
        'gpt-4o': { input_per_mtok_usd: 2.5, output_per_mtok_usd: 10, cached_input_per_mtok_usd: 1.25 },
      },
    }),
  );
  return { upstream, streamUpstream };
}

/** The floor: a bare proxy to each mock upstream (its `pid`: the non-streaming one's; `streamPid`: the other's). */
export async function startBare(core: string | null, upstream: string, streamUpstream: string): Promise<Target & { streamPid: number }> {
  const bare = await start(core, 'bare-proxy.js', [new URL(upstream).origin]);
  const bareStream = await start(core, 'bare-proxy.js', [new URL(streamUpstream).origin]);
  return { name: 'bare', origin: `http://127.0.0.1:${bare.value}`, streamOrigin: `http://127.0.0.1:${bareStream.value}`, auth: false, pid: bare.pid, streamPid: bareStream.pid };
}

/** The environment of a gateway on `backend` with its own store (removed by `stopAll`), configured by the run's gateway.json. */
export function gatewayEnv(dir: string, backend: string, extraEnv: Record<string, string> = {}): Record<string, string> {
  const prefix = `ditto-bench-${randomUUID().slice(0, 8)}`;
  const schema = `bench_${prefix.slice(-8).replace(/-/g, '')}`;
  stores.push({ prefix, schema });
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    GATEWAY_CONFIG: path.join(dir, 'gateway.json'),
    STORAGE_BACKEND: backend,
    STORAGE_FALLBACK: 'false',
    SQLITE_PATH: path.join(dir, `${prefix}.sqlite`),
    REDIS_URL,
    REDIS_PREFIX: prefix,
    POSTGRES_DSN,
    POSTGRES_SCHEMA: schema,
    ...extraEnv,
  };
}

/** The line a gateway prints once it listens, with its origin. */
export const LISTENING = /listening on (http:\/\/[0-9a-z.:]+)/;

/** A gateway (`main`: this build's '../src/main.js' or an old build's entry point) on `backend`, with its own store. */
export async function startGateway(
  core: string | null,
  dir: string,
  name: string,
  main: string,
  backend: string,
  extraEnv: Record<string, string> = {},
  nodeOptions: string[] = [],
): Promise<Target> {
  const { value: origin, pid } = await start(core, main, [], gatewayEnv(dir, backend, extraEnv), LISTENING, nodeOptions);
  return { name, origin, streamOrigin: origin, auth: true, pid };
}

/** Stops every process (SIGTERM: the gateways flush their audit queues on the way out), then removes the stores. */
export async function stopAll(): Promise<void> {
  await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve).kill('SIGTERM')) : null)));
  if (stores.length === 0) return;
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (const { prefix } of stores) {
      const keys = await redis.keys(`${prefix}:*`);
      for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
    }
  } catch {
    /* no redis: nothing was stored there */
  } finally {
    redis.disconnect();
  }
  const client = new Client({ connectionString: POSTGRES_DSN });
  try {
    await client.connect();
    for (const { schema } of stores) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } catch {
    /* no postgres: nothing was stored there */
  } finally {
    await client.end().catch(() => undefined);
  }
}
