/**
 * `npm run bench`: the same load against a bare undici pass-through proxy (the floor) and against the
 * gateway (virtual key with token and cost budgets, so every request reserves and settles on both
 * ledgers and two scopes; SQLite and Redis stores, `BENCH_BACKENDS=sqlite,redis,postgres` to choose),
 * each in its own process, at 32 and 128 connections. Every process shares the machine's cores with the load
 * generator and the mock, so a single measurement swings with whatever else the machine does (the bare
 * proxy alone has ranged from 4,300 to 8,600 RPS between runs here): all targets run side by side and
 * are measured in BENCH_ROUNDS interleaved rounds (bare, gateway, gateway, bare, …). A row shows the
 * target's median round; its ratios are the medians of the per-round ratios (gateway / bare of the same
 * round and connection count, measured within a minute of each other), so a slowdown of the whole host
 * that lasts a round cancels out instead of landing on one side of the ratio. Prints RPS, p50, p99 and
 * the ratios; writes JSON under bench/results/ and appends a section to docs/benchmarks.md.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import autocannon from 'autocannon';
import Redis from 'ioredis';
import { Client } from 'pg';
import { recordRun } from './record';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = [32, 128];
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'sqlite,redis').split(',');
const KEY = `sk-ditto-bench${randomUUID().replace(/-/g, '')}`;
const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], max_tokens: 16 });
const children: ChildProcess[] = [];

function start(script: string, args: string[], env: Record<string, string> = {}, ready: RegExp = /(\S+)\n/): Promise<string> {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const match = ready.exec(out);
      if (!match) return;
      // Ready: from here on its output (the gateway's access log) is drained unread, so the load
      // generator in this process does not spend its CPU on it.
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve(match[1]);
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${out.slice(-500)}`)));
  });
}

interface Measurement {
  target: string;
  round: number;
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(target: string, round: number, url: string, connections: number, auth: boolean): Promise<Measurement> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (auth) headers.authorization = `Bearer ${KEY}`;
  // Warm-up, not measured.
  await autocannon({ url, method: 'POST', headers, body: BODY, connections, duration: 2 });
  const result = await autocannon({ url, method: 'POST', headers, body: BODY, connections, duration: DURATION_S });
  return {
    target,
    round,
    connections,
    rps: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

/** The round with the median RPS (its latencies with it, so a row is one real measurement). */
function median(of: Measurement[]): Measurement {
  return [...of].sort((a, b) => a.rps - b.rps)[Math.floor(of.length / 2)];
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-bench-'));
  const upstream = await start('mock-upstream-server.js', []);
  const barePort = await start('bare-proxy.js', [new URL(upstream).origin]);
  writeFileSync(
    path.join(dir, 'gateway.json'),
    JSON.stringify({
      backends: [{ name: 'mock', base_url: upstream }],
      // Budgets on: limits far above what a run can spend, so nothing is refused but every request is
      // governed (key + tenant scope, tokens and cost).
      virtual_keys: [{ id: 'bench', token: KEY, tenant_id: 'bench', budget: { total_tokens: 1e15, total_usd_micros: 1e15 } }],
      pricing: { 'gpt-4o-mini': { input_per_mtok_usd: 0.15, output_per_mtok_usd: 0.6, cached_input_per_mtok_usd: 0.075 } },
    }),
  );
  const targets: Array<{ name: string; url: string; auth: boolean }> = [
    { name: 'bare', url: `http://127.0.0.1:${barePort}/v1/chat/completions`, auth: false },
  ];
  const stores: Array<{ prefix: string; schema: string }> = [];
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
      REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
      REDIS_PREFIX: prefix,
      POSTGRES_DSN: process.env.TEST_POSTGRES_DSN ?? 'postgres://postgres@127.0.0.1:5432/ditto_test',
      POSTGRES_SCHEMA: stores[stores.length - 1].schema,
    };
    const url = await start('../src/main.js', [], env, /listening on (http:\/\/[0-9a-z.:]+)/);
    targets.push({ name: `gateway (${backend})`, url: `${url}/v1/chat/completions`, auth: true });
  }
  const rounds: Measurement[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const connections of CONNECTIONS) {
      // Alternate the order, so no target is always measured right after the same neighbour.
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) rounds.push(await load(t.name, round, t.url, connections, t.auth));
    }
  }
  const results = targets.flatMap((t) => CONNECTIONS.map((c) => median(rounds.filter((r) => r.target === t.name && r.connections === c))));

  // Per round: the gateway against the bare proxy of the same round and connection count.
  const ratios = (r: Measurement, of: (m: Measurement) => number) =>
    medianOf(
      rounds
        .filter((m) => m.target === r.target && m.connections === r.connections)
        .map((m) => of(m) / of(rounds.find((b) => b.target === 'bare' && b.connections === m.connections && b.round === m.round)!)),
    );
  const lines = results.map((r) => {
    const ratio = r.target === 'bare' ? ' | 1.00 | 1.00' : ` | ${ratios(r, (m) => m.rps).toFixed(2)} | ${ratios(r, (m) => m.p99).toFixed(2)}`;
    return `| ${r.target} | ${r.connections} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors + r.non2xx}${ratio} |`;
  });
  const table = ['| target | connections | RPS | p50 ms | p99 ms | errors | RPS / bare | p99 / bare |', '|---|---|---|---|---|---|---|---|', ...lines].join('\n');
  process.stdout.write(`${table}\n`);

  recordRun('Proxy', { durationS: DURATION_S, rounds: ROUNDS, results, allRounds: rounds }, (machine) =>
    `${machine}; non-streaming chat completion (max_tokens 16) against the mock upstream, budgets on (key + tenant scope, token and cost ledgers); ${DURATION_S} s per measurement after a 2 s warm-up, ${ROUNDS} interleaved rounds: RPS, p50 and p99 of each target's median round, ratios the median of the per-round ratios to the bare proxy; every process on the same 2 cores.\n\n${table}\n\nPer round (RPS): ${perRound(rounds)}`,
  );
  rmSync(dir, { recursive: true, force: true });
  // The gateways flush their audit queues on the way out: drop the stores once they are gone.
  await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve).kill('SIGTERM')) : null)));
  await dropStores(stores);
}

/** `target@connections a / b / c` for every target, in round order. */
function perRound(rounds: Measurement[]): string {
  const groups = new Map<string, number[]>();
  for (const m of [...rounds].sort((a, b) => a.round - b.round)) {
    const key = `${m.target} @${m.connections}`;
    groups.set(key, [...(groups.get(key) ?? []), m.rps]);
  }
  return [...groups].map(([key, rps]) => `${key}: ${rps.join(' / ')}`).join('; ');
}

/** Removes what the gateways wrote (a run leaves hundreds of thousands of audit rows behind otherwise). */
async function dropStores(stores: Array<{ prefix: string; schema: string }>): Promise<void> {
  if (BACKENDS.includes('redis')) {
    const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
    for (const { prefix } of stores) {
      const keys = await redis.keys(`${prefix}:*`);
      for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
    }
    redis.disconnect();
  }
  if (BACKENDS.includes('postgres')) {
    const client = new Client({ connectionString: process.env.TEST_POSTGRES_DSN ?? 'postgres://postgres@127.0.0.1:5432/ditto_test' });
    await client.connect();
    for (const { schema } of stores) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  }
}

void main()
  .catch((error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const child of children) child.kill('SIGTERM');
  });
