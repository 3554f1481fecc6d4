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
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BODY, KEY, PATH, STREAM_BODY, Target, startBare, startGateway, startUpstreams, stopAll } from './gateways';
import { BenchSetupError, Pinning, ensureWrk, onCore, pinCores, runWrk } from './load-generator';
import { buildOldCommit } from './old-build';
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
/** Earlier commits (comma-separated) to measure beside this one, on the same backends (built once under .cache/bench-old/). */
const OLD_COMMITS = (process.env.BENCH_OLD_COMMIT ?? '').split(',').filter(Boolean);
/** BUDGET_MODE for every gateway (unset: each build's default), so two builds can be made to do the same work. */
const BUDGET_MODE = process.env.BENCH_BUDGET_MODE;

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
  try {
    await measure(wrk, pinning, dir);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  process.stderr.write(`npm run bench: ${Math.round((Date.now() - started) / 1000)} s after the build\n`);
}

async function measure(wrk: string, pinning: Pinning, dir: string): Promise<void> {
  // The mocks stand for the provider: they run beside the load generator, not on the measured core.
  const { upstream, streamUpstream } = await startUpstreams(pinning.loadCore, dir, CHUNK_DELAY_MS);
  const targets: Target[] = [await startBare(pinning.targetCore, upstream, streamUpstream)];
  const olds = OLD_COMMITS.map(buildOldCommit);
  const env: Record<string, string> = BUDGET_MODE ? { BUDGET_MODE } : {};
  // Each backend's old builds next to its new one, so they are measured one after the other.
  for (const backend of BACKENDS) {
    targets.push(await startGateway(pinning.targetCore, dir, `gateway (${backend})`, '../src/main.js', backend, env));
    for (const old of olds) targets.push(await startGateway(pinning.targetCore, dir, `${old.commit} (${backend})`, old.main, backend, env));
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

  const tables = report(targets, rounds, events, olds.map((old) => old.commit));
  process.stdout.write(`${tables}\n`);
  const pinned =
    pinning.targetCore === null
      ? 'not pinned (no taskset or a single core): every process on the same cores'
      : `pinned with taskset: targets (bare proxies, gateways) on core ${pinning.targetCore}; wrk, the mock upstreams, the first-event client and the orchestrator on core ${pinning.loadCore}; redis-server and PostgreSQL not pinned`;
  const builds = olds.length
    ? `Builds side by side: this commit (\`gateway (…)\`) and ${olds.map((old) => old.commit).join(', ')} (BENCH_OLD_COMMIT), each backend's builds measured one after the other in every round; BUDGET_MODE ${BUDGET_MODE ?? "each build's default"}.`
    : `BUDGET_MODE ${BUDGET_MODE ?? 'default'}.`;
  recordRun('Proxy', { durationS: DURATION_S, rounds: ROUNDS, chunkDelayMs: CHUNK_DELAY_MS, loadGenerator: `wrk ${wrk}`, pinning, oldCommits: olds.map((old) => old.commit), budgetMode: BUDGET_MODE, allRounds: rounds, firstEvents: events }, (machine) =>
    [
      `${machine}; load generator: wrk ${wrk} (one thread), ${pinned}.`,
      builds,
      `Budgets on (key + tenant scope, token and cost ledgers); ${DURATION_S} s per measurement (a ${WARM_UP_S} s unmeasured warm-up before a target's first measurement of each scenario), ${ROUNDS} interleaved rounds: RPS, p50 and p99 of each target's median round, ratios the median of the per-round ratios to the bare proxy.`,
      `Streaming: SSE chat completion of 20 events ${CHUNK_DELAY_MS} ms apart at ${STREAM_CONNECTIONS} connections (latency = the whole stream); first event: ${ttfbPerRound} sequential requests per target and round on one keep-alive connection (after ${TTFB_WARM_UP} unmeasured ones), p50 and p99 over all rounds, overhead the median of the per-round p50 differences to the bare proxy.`,
      '',
      tables,
      '',
      `Per round (RPS): ${perRound(rounds)}`,
    ].join('\n'),
  );
}

function report(targets: Target[], rounds: Measurement[], events: FirstEvent[], oldCommits: string[]): string {
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
  const roundsOf = (target: string) => [...new Set(events.filter((e) => e.target === target).map((e) => e.round))];
  // This build against each old one, per backend: medians of the per-round ratios (same round, scenario
  // and connection count), and of the per-round differences of the first event's p50.
  const versus = oldCommits.flatMap((oldCommit) =>
    targets
      .filter((t) => t.name.startsWith('gateway ('))
      .flatMap((t) => {
        const oldName = t.name.replace('gateway', oldCommit);
        const pairs = (scenario: Measurement['scenario'], connections: number) =>
          rounds
            .filter((m) => m.scenario === scenario && m.target === t.name && m.connections === connections)
            .map((m) => [m, rounds.find((o) => o.scenario === scenario && o.target === oldName && o.connections === connections && o.round === m.round)!] as const);
        const firstEvent = fixed(medianOf(roundsOf(t.name).map((round) => medianOf(first(t.name, round)) - medianOf(first(oldName, round)))));
        return [...CONNECTIONS.map((c) => ['chat', c] as const), ['stream', STREAM_CONNECTIONS] as const].map(([scenario, c]) => {
          const of = pairs(scenario, c);
          const ratio = (value: (m: Measurement) => number) => fixed(medianOf(of.map(([m, o]) => value(m) / value(o)).filter(Number.isFinite)));
          return `| ${oldCommit} | ${t.name.slice('gateway '.length)} | ${scenario} | ${c} | ${ratio((m) => m.rps)} | ${ratio((m) => m.p99)} | ${scenario === 'stream' ? firstEvent : '—'} |`;
        });
      }),
  );
  const versusTable = ['| old build | backend | scenario | connections | RPS this / old | p99 this / old | first event p50 this − old ms |', '|---|---|---|---|---|---|---|', ...versus].join('\n');
  return [
    ...(oldCommits.length ? ['This build against the old ones (medians of per-round ratios; above 1 for RPS and below 1 for p99 is better):', '', versusTable, ''] : []),
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

void main()
  .catch((error: Error) => {
    process.stderr.write(error instanceof BenchSetupError ? `${error.message}\n` : `${error.stack}\n`);
    process.exitCode = 1;
  });
