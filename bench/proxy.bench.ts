/**
 * `npm run bench`: the same load against a bare undici pass-through proxy (the floor) and against the
 * gateway on each storage backend (`BENCH_BACKENDS`, default memory,sqlite,redis,postgres; a virtual key
 * with token and cost budgets, so every request reserves and settles on both ledgers and two scopes),
 * each in its own process. The load comes from wrk (bench/load-generator.ts), a program outside Node,
 * on a core of its own when `taskset` is available, the targets on the other.
 *
 * Scenarios: a non-streaming chat completion at 32 and 128 connections; a streamed one (SSE, 20 events
 * from the mock, `BENCH_CHUNK_DELAY_MS` apart) at 32 connections; and the time to the first event of the
 * streamed one, requests one after another from a raw-socket client in its own process
 * (bench/ttfb-client.ts).
 *
 * A single measurement swings with whatever else the machine does, so all targets run side by side and
 * are measured in BENCH_ROUNDS interleaved rounds (order alternating). A row shows the target's median
 * round; its ratios are the medians of the per-round ratios (gateway / bare of the same round and
 * scenario, measured within a minute of each other), so a slowdown of the whole host that lasts a round
 * cancels out instead of landing on one side of the ratio. Prints the tables; writes JSON under
 * bench/results/ and a section in docs/benchmarks.md.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { Client } from 'pg';
import { BenchSetupError, Pinning, ensureWrk, onCore, pinCores, runWrk } from './load-generator';
import { recordRun } from './record';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 3);
/** Before a target's first measurement of each scenario and connection count (JIT, connection pools). */
const WARM_UP_S = 1;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = [32, 128];
const STREAM_CONNECTIONS = 32;
/** First-event requests per target, spread over the rounds (plus a few unmeasured ones each round). */
const TTFB_REQUESTS = Number(process.env.BENCH_TTFB_REQUESTS ?? 500);
const TTFB_WARM_UP = 5;
const CHUNK_DELAY_MS = Number(process.env.BENCH_CHUNK_DELAY_MS ?? 1);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'memory,sqlite,redis,postgres').split(',');
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_DSN = process.env.TEST_POSTGRES_DSN ?? 'postgres://postgres@127.0.0.1:5432/ditto_test';
const KEY = `sk-ditto-bench${randomUUID().replace(/-/g, '')}`;
const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], max_tokens: 16 });
/** 20 events: the role, 16 tokens, the finish, the usage and `[DONE]`. Routed to the streaming mock by its model. */
const STREAM_BODY = JSON.stringify({
  model: 'gpt-4o',
  messages: [{ role: 'user', content: 'Stream a hello to the benchmark.' }],
  max_tokens: 16,
  stream: true,
  stream_options: { include_usage: true },
});
const children: ChildProcess[] = [];

function start(core: string | null, script: string, args: string[], env: Record<string, string> = {}, ready: RegExp = /(\S+)\n/): Promise<string> {
  const [command, argv] = onCore(core, process.execPath, [path.join(__dirname, script), ...args]);
  const child = spawn(command, argv, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const match = ready.exec(out);
      if (!match) return;
      // Ready: from here on its output (the gateway's access log) is drained unread.
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve(match[1]);
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${out.slice(-500)}`)));
  });
}

interface Target {
  name: string;
  /** Origin of the non-streaming scenario's server and of the streaming one's (the same gateway; two bare proxies). */
  origin: string;
  streamOrigin: string;
  auth: boolean;
}

interface Measurement {
  scenario: 'chat' | 'stream';
  target: string;
  round: number;
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

interface FirstEvent {
  target: string;
  round: number;
  /** Microseconds from the request to its first SSE event, one per request. */
  samples: number[];
}

const PATH = '/v1/chat/completions';

async function load(scenario: Measurement['scenario'], target: Target, round: number, connections: number, core: string | null): Promise<Measurement> {
  const options = {
    url: `${scenario === 'chat' ? target.origin : target.streamOrigin}${PATH}`,
    connections,
    body: scenario === 'chat' ? BODY : STREAM_BODY,
    authorization: target.auth ? `Bearer ${KEY}` : undefined,
    core,
  };
  if (round === 0) await runWrk({ ...options, durationS: WARM_UP_S });
  const result = await runWrk({ ...options, durationS: DURATION_S });
  return { scenario, target: target.name, round, connections, rps: result.rps, p50: result.p50, p99: result.p99, errors: result.errors };
}

function firstEvents(target: Target, round: number, requests: number, core: string | null): Promise<FirstEvent> {
  const [command, argv] = onCore(core, process.execPath, [path.join(__dirname, 'ttfb-client.js'), `${target.streamOrigin}${PATH}`, String(requests), String(TTFB_WARM_UP)]);
  const child = spawn(command, argv, {
    env: { PATH: process.env.PATH ?? '', BENCH_BODY: STREAM_BODY, BENCH_AUTHORIZATION: target.auth ? `Bearer ${KEY}` : '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`ttfb-client exited with ${code} measuring ${target.name}`));
      try {
        resolve({ target: target.name, round, samples: (JSON.parse(out) as { samples_us: number[] }).samples_us });
      } catch {
        reject(new Error(`ttfb-client printed no samples measuring ${target.name}: ${out.slice(0, 200)}`));
      }
    });
  });
}

/** The round with the median RPS (its latencies with it, so a row is one real measurement). */
function median(of: Measurement[]): Measurement {
  return [...of].sort((a, b) => a.rps - b.rps)[Math.floor(of.length / 2)];
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

const medianOf = (values: number[]) => percentile(values, 50);
/** Milliseconds or a ratio; a dash where there is nothing to show (a round in which no request completed). */
const fixed = (value: number) => (Number.isFinite(value) ? value.toFixed(2) : '—');

async function main(): Promise<void> {
  const started = Date.now();
  const wrk = ensureWrk();
  const pinning = pinCores();
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-bench-'));
  const stores: Array<{ prefix: string; schema: string }> = [];
  try {
    await measure(wrk, pinning, dir, stores);
  } finally {
    // The gateways flush their audit queues on the way out: remove the stores once they are gone.
    await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve).kill('SIGTERM')) : null)));
    rmSync(dir, { recursive: true, force: true });
    await dropStores(stores);
  }
  process.stderr.write(`npm run bench: ${Math.round((Date.now() - started) / 1000)} s after the build\n`);
}

async function measure(wrk: string, pinning: Pinning, dir: string, stores: Array<{ prefix: string; schema: string }>): Promise<void> {
  // The mocks stand for the provider: they run beside the load generator, not on the measured core.
  const upstream = await start(pinning.loadCore, 'mock-upstream-server.js', [JSON.stringify({ recordRequests: false })]);
  const streamUpstream = await start(pinning.loadCore, 'mock-upstream-server.js', [JSON.stringify({ recordRequests: false, chunkDelayMs: CHUNK_DELAY_MS, replyTokens: 16 })]);
  const barePort = await start(pinning.targetCore, 'bare-proxy.js', [new URL(upstream).origin]);
  const bareStreamPort = await start(pinning.targetCore, 'bare-proxy.js', [new URL(streamUpstream).origin]);
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
  const targets: Target[] = [{ name: 'bare', origin: `http://127.0.0.1:${barePort}`, streamOrigin: `http://127.0.0.1:${bareStreamPort}`, auth: false }];
  for (const backend of BACKENDS) {
    const prefix = `ditto-bench-${randomUUID().slice(0, 8)}`;
    stores.push({ prefix, schema: `bench_${prefix.slice(-8).replace(/-/g, '')}` });
    const env: Record<string, string> = {
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      GATEWAY_CONFIG: path.join(dir, 'gateway.json'),
      STORAGE_BACKEND: backend,
      STORAGE_FALLBACK: 'false',
      SQLITE_PATH: path.join(dir, `${backend}.sqlite`),
      REDIS_URL,
      REDIS_PREFIX: prefix,
      POSTGRES_DSN,
      POSTGRES_SCHEMA: stores[stores.length - 1].schema,
    };
    const origin = await start(pinning.targetCore, '../src/main.js', [], env, /listening on (http:\/\/[0-9a-z.:]+)/);
    targets.push({ name: `gateway (${backend})`, origin, streamOrigin: origin, auth: true });
  }

  const rounds: Measurement[] = [];
  const events: FirstEvent[] = [];
  const ttfbPerRound = Math.ceil(TTFB_REQUESTS / ROUNDS);
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order, so no target is always measured right after the same neighbour.
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const connections of CONNECTIONS) for (const t of order) rounds.push(await load('chat', t, round, connections, pinning.loadCore));
    for (const t of order) rounds.push(await load('stream', t, round, STREAM_CONNECTIONS, pinning.loadCore));
    for (const t of order) events.push(await firstEvents(t, round, ttfbPerRound, pinning.loadCore));
    process.stderr.write(`round ${round + 1} of ${ROUNDS} done\n`);
  }

  const tables = report(targets, rounds, events);
  process.stdout.write(`${tables}\n`);
  const pinned =
    pinning.targetCore === null
      ? 'not pinned (no taskset or a single core): every process on the same cores'
      : `pinned with taskset: targets (bare proxies, gateways) on core ${pinning.targetCore}; wrk, the mock upstreams, the first-event client and the orchestrator on core ${pinning.loadCore}; redis-server and PostgreSQL not pinned`;
  recordRun('Proxy', { durationS: DURATION_S, rounds: ROUNDS, chunkDelayMs: CHUNK_DELAY_MS, loadGenerator: `wrk ${wrk}`, pinning, allRounds: rounds, firstEvents: events }, (machine) =>
    [
      `${machine}; load generator: wrk ${wrk} (one thread), ${pinned}.`,
      `Budgets on (key + tenant scope, token and cost ledgers); ${DURATION_S} s per measurement (a ${WARM_UP_S} s unmeasured warm-up before a target's first measurement of each scenario), ${ROUNDS} interleaved rounds: RPS, p50 and p99 of each target's median round, ratios the median of the per-round ratios to the bare proxy.`,
      `Streaming: SSE chat completion of 20 events ${CHUNK_DELAY_MS} ms apart at ${STREAM_CONNECTIONS} connections (latency = the whole stream); first event: ${ttfbPerRound} sequential requests per target and round on one keep-alive connection (after ${TTFB_WARM_UP} unmeasured ones), p50 and p99 over all rounds, overhead the median of the per-round p50 differences to the bare proxy.`,
      '',
      tables,
      '',
      `Per round (RPS): ${perRound(rounds)}`,
    ].join('\n'),
  );
}

function report(targets: Target[], rounds: Measurement[], events: FirstEvent[]): string {
  const of = (scenario: Measurement['scenario'], target: string, connections: number) =>
    rounds.filter((m) => m.scenario === scenario && m.target === target && m.connections === connections);
  // Per round: the gateway against the bare proxy of the same round, scenario and connection count.
  const ratio = (m: Measurement, value: (m: Measurement) => number) =>
    value(m) / value(rounds.find((b) => b.scenario === m.scenario && b.target === 'bare' && b.connections === m.connections && b.round === m.round)!);
  const row = (scenario: Measurement['scenario'], target: string, connections: number) => {
    const measured = of(scenario, target, connections);
    const r = median(measured);
    const ratios = (value: (m: Measurement) => number) => fixed(medianOf(measured.map((m) => ratio(m, value)).filter(Number.isFinite)));
    const columns = target === 'bare' ? '1.00 | 1.00' : `${ratios((x) => x.rps)} | ${ratios((x) => x.p99)}`;
    return `| ${target} | ${connections} | ${r.rps} | ${fixed(r.p50)} | ${fixed(r.p99)} | ${measured.reduce((sum, m) => sum + m.errors, 0)} | ${columns} |`;
  };
  const head = '| target | connections | RPS | p50 ms | p99 ms | errors | RPS / bare | p99 / bare |\n|---|---|---|---|---|---|---|---|';
  const chat = [head, ...targets.flatMap((t) => CONNECTIONS.map((c) => row('chat', t.name, c)))].join('\n');
  const stream = [head, ...targets.map((t) => row('stream', t.name, STREAM_CONNECTIONS))].join('\n');
  const first = (target: string, round?: number) => events.filter((e) => e.target === target && (round === undefined || e.round === round)).flatMap((e) => e.samples.map((us) => us / 1000));
  const firstRows = targets.map((t) => {
    const all = first(t.name);
    const overhead = t.name === 'bare' ? '—' : fixed(medianOf([...new Set(events.map((e) => e.round))].map((round) => medianOf(first(t.name, round)) - medianOf(first('bare', round)))));
    return `| ${t.name} | ${all.length} | ${fixed(percentile(all, 50))} | ${fixed(percentile(all, 99))} | ${overhead} |`;
  });
  const firstTable = ['| target | requests | first event p50 ms | p99 ms | p50 − bare ms |', '|---|---|---|---|---|', ...firstRows].join('\n');
  return [
    'Non-streaming chat completion (max_tokens 16):',
    '',
    chat,
    '',
    `Streamed chat completion (20 SSE events, ${CHUNK_DELAY_MS} ms apart; latency is the whole stream):`,
    '',
    stream,
    '',
    'Time to the first SSE event, requests one at a time:',
    '',
    firstTable,
  ].join('\n');
}

/** `target@connections a / b / c` for every scenario and target, in round order. */
function perRound(rounds: Measurement[]): string {
  const groups = new Map<string, number[]>();
  for (const m of [...rounds].sort((a, b) => a.round - b.round)) {
    const key = `${m.scenario === 'stream' ? 'stream ' : ''}${m.target} @${m.connections}`;
    groups.set(key, [...(groups.get(key) ?? []), m.rps]);
  }
  return [...groups].map(([key, rps]) => `${key}: ${rps.join(' / ')}`).join('; ');
}

/** Removes what the gateways wrote (a run leaves hundreds of thousands of audit rows behind otherwise). */
async function dropStores(stores: Array<{ prefix: string; schema: string }>): Promise<void> {
  if (BACKENDS.includes('redis')) {
    const redis = new Redis(REDIS_URL);
    for (const { prefix } of stores) {
      const keys = await redis.keys(`${prefix}:*`);
      for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
    }
    redis.disconnect();
  }
  if (BACKENDS.includes('postgres')) {
    const client = new Client({ connectionString: POSTGRES_DSN });
    await client.connect();
    for (const { schema } of stores) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  }
}

void main()
  .catch((error: Error) => {
    process.stderr.write(error instanceof BenchSetupError ? `${error.message}\n` : `${error.stack}\n`);
    process.exitCode = 1;
  });
