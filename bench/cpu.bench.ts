/**
 * `npm run bench:cpu`: what a request costs the gateway's process in CPU time, at a fixed rate well below
 * saturation (so a slow neighbour or a store that queues changes the latency, not the figure). Each
 * target gets the same paced load from wrk (`BENCH_CPU_RATE` requests/s over 16 connections, each
 * pausing between requests); its process's user + system time (all threads: the SQLite writer thread
 * counts) is read from /proc before and after, and divided by the requests wrk completed.
 *
 * Targets: the bare proxy, the gateway of this build on each backend (`BENCH_BACKENDS`), and with
 * `BENCH_OLD_COMMIT` (one commit or several, comma-separated) the same gateways built from those commits,
 * measured in interleaved rounds. With
 * `BENCH_CPU_PROF=1` every gateway runs under `--cpu-prof`; its profile is summarised (self time by
 * function) when it exits and kept under bench/results/profiles/.
 *
 * Linux only (/proc).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BODY, KEY, PATH, STREAM_BODY, Target, startBare, startGateway, startUpstreams, stopAll } from './gateways';
import { BenchSetupError, ensureWrk, pinCores, runWrk } from './load-generator';
import { buildOldCommit } from './old-build';
import { recordRun } from './record';

const RATE = Number(process.env.BENCH_CPU_RATE ?? 400);
const SECONDS = Number(process.env.BENCH_CPU_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 16;
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'memory,sqlite,redis,postgres').split(',');
const OLD_COMMITS = (process.env.BENCH_OLD_COMMIT ?? '').split(',').filter(Boolean);
const BUDGET_MODE = process.env.BENCH_BUDGET_MODE;
const PROFILE = process.env.BENCH_CPU_PROF === '1';
/** clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux build that matters). */
const TICKS_PER_S = 100;

interface Sample {
  target: string;
  scenario: 'chat' | 'stream';
  round: number;
  requests: number;
  rps: number;
  cpuUsPerRequest: number;
  /** The measured window (ms since the epoch). */
  measuredFrom: number;
  measuredUntil: number;
}

/** User + system CPU time of a process, all its threads, in microseconds. */
function cpuUs(pid: number): number {
  // Fields after the command (which may hold spaces) in parentheses; utime and stime are the 14th and 15th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / TICKS_PER_S;
}

async function paced(target: Target, scenario: Sample['scenario'], round: number, core: string | null): Promise<Sample> {
  const options = {
    url: `${scenario === 'chat' ? target.origin : target.streamOrigin}${PATH}`,
    connections: CONNECTIONS,
    body: scenario === 'chat' ? BODY : STREAM_BODY,
    authorization: target.auth ? `Bearer ${KEY}` : undefined,
    core,
    // The time a connection waits after each answer, for RATE requests/s if answers took no time.
    delayMs: Math.max(1, Math.round((CONNECTIONS * 1000) / RATE)),
  };
  if (round === 0) await runWrk({ ...options, durationS: 2 });
  const measuredFrom = Date.now();
  const before = cpuUs(target.pid);
  const result = await runWrk({ ...options, durationS: SECONDS });
  const spent = cpuUs(target.pid) - before;
  if (result.errors > 0) process.stderr.write(`${target.name} ${scenario}: ${result.errors} errors\n`);
  const cpuUsPerRequest = spent / Math.max(1, result.requests);
  return { target: target.name, scenario, round, requests: result.requests, rps: result.rps, cpuUsPerRequest, measuredFrom, measuredUntil: Date.now() };
}

const medianOf = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * Self time by function (name, file:line) as a share of the busy time (idle left out), the top `limit`,
 * from a V8 .cpuprofile; only samples from `skipS` seconds after the profile's start (start-up and
 * warm-up left out) until `untilS`.
 */
function summarise(file: string, skipS: number, untilS: number, limit = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
    samples: number[];
    timeDeltas: number[];
  };
  const frame = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  let total = 0;
  let at = 0;
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0;
    if (at < skipS * 1e6 || at > untilS * 1e6) return;
    const f = frame.get(id)!;
    const where = f.url ? `${f.url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    const dt = f.functionName === '(idle)' ? 0 : (profile.timeDeltas[i] ?? 0);
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([key, us]) => `| ${((100 * us) / total).toFixed(1)} % | \`${key}\` |`)
    .join('\n');
}

async function main(): Promise<void> {
  if (!existsSync('/proc/self/stat')) throw new BenchSetupError('npm run bench:cpu reads process CPU time from /proc: Linux only');
  const wrk = ensureWrk();
  const pinning = pinCores();
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-bench-cpu-'));
  const profiles = path.resolve('bench/results/profiles', new Date().toISOString().replace(/[:.]/g, '-'));
  const samples: Sample[] = [];
  let olds: Array<ReturnType<typeof buildOldCommit>> = [];
  const targets: Target[] = [];
  /** Each gateway's profile directory and when it was started (ms since the epoch). */
  const profiled = new Map<string, { dir: string; started: number }>();
  try {
    olds = OLD_COMMITS.map(buildOldCommit);
    const { upstream, streamUpstream } = await startUpstreams(pinning.loadCore, dir, 1);
    const bare = await startBare(pinning.targetCore, upstream, streamUpstream);
    targets.push(bare);
    const env: Record<string, string> = BUDGET_MODE ? { BUDGET_MODE } : {};
    for (const backend of BACKENDS) {
      const builds: Array<[string, string]> = [[`gateway (${backend})`, '../src/main.js'], ...olds.map((old): [string, string] => [`${old.commit} (${backend})`, old.main])];
      for (const [name, main] of builds) {
        const profileDir = path.join(profiles, name.replace(/[^a-z0-9]+/gi, '-'));
        if (PROFILE) mkdirSync(profileDir, { recursive: true });
        profiled.set(name, { dir: profileDir, started: Date.now() });
        targets.push(await startGateway(pinning.targetCore, dir, name, main, backend, env, PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []));
      }
    }
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      // The bare streaming proxy is its own process: its CPU is read from the streaming target's pid.
      for (const t of order) samples.push(await paced(t, 'chat', round, pinning.loadCore));
      for (const t of order) samples.push(await paced(t.name === 'bare' ? { ...t, pid: bare.streamPid } : t, 'stream', round, pinning.loadCore));
      process.stderr.write(`round ${round + 1} of ${ROUNDS} done\n`);
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }

  const row = (t: Target, scenario: Sample['scenario']) => {
    const of = samples.filter((s) => s.target === t.name && s.scenario === scenario);
    const us = medianOf(of.map((s) => s.cpuUsPerRequest));
    const bare = medianOf(samples.filter((s) => s.target === 'bare' && s.scenario === scenario).map((s) => s.cpuUsPerRequest));
    // An old build's row: this build's CPU per request over the old one's.
    const thisName = olds.some((old) => t.name.startsWith(`${old.commit} (`)) ? t.name.replace(/^\S+/, 'gateway') : null;
    const thisUs = thisName ? medianOf(samples.filter((s) => s.target === thisName && s.scenario === scenario).map((s) => s.cpuUsPerRequest)) : NaN;
    return `| ${t.name} | ${scenario} | ${medianOf(of.map((s) => s.rps))} | ${Math.round(us)} | ${(us / bare).toFixed(2)} | ${Number.isFinite(thisUs) ? (thisUs / us).toFixed(2) : '—'} |`;
  };
  const table = [
    '| target | scenario | RPS | CPU µs / request | / bare | this build / it |',
    '|---|---|---|---|---|---|',
    ...(['chat', 'stream'] as const).flatMap((scenario) => targets.map((t) => row(t, scenario))),
  ].join('\n');
  const summaries = PROFILE
    ? [...profiled].flatMap(([target, { dir: profileDir, started }]) => {
        // The profile starts about when the process did; the measured load from its first measurement to its last.
        const measured = samples.filter((s) => s.target === target);
        const skipS = (Math.min(...measured.map((s) => s.measuredFrom)) - started) / 1000;
        const untilS = (Math.max(...measured.map((s) => s.measuredUntil)) - started) / 1000;
        return (
          readdirSync(profileDir)
            .filter((f) => f.endsWith('.cpuprofile'))
            // CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile: thread 0 is the event loop, others are workers.
            .map((f) => {
              const thread = f.split('.')[4] === '0' ? 'event loop' : 'worker thread';
              const top = summarise(path.join(profileDir, f), skipS, untilS);
              return `Self time on the ${thread} of \`${target}\` during the measured load (share of the busy time), top 25:\n\n| share | function |\n|---|---|\n${top}`;
            })
        );
      })
    : [];
  process.stdout.write(`${table}\n\n${summaries.join('\n\n')}\n`);
  recordRun('CPU per request', { rate: RATE, seconds: SECONDS, rounds: ROUNDS, oldCommits: olds.map((old) => old.commit), budgetMode: BUDGET_MODE, samples }, (machine) =>
    [
      `${machine}; load generator: wrk ${wrk}, ${CONNECTIONS} connections paced at about ${RATE} requests/s (each waits ${Math.round((CONNECTIONS * 1000) / RATE)} ms after an answer), ${SECONDS} s per measurement, ${ROUNDS} interleaved rounds; CPU = user + system time of the target's process from /proc, divided by the requests completed; median of the rounds. BUDGET_MODE ${BUDGET_MODE ?? "each build's default"}.`,
      '',
      table,
      ...(summaries.length ? ['', ...summaries] : []),
    ].join('\n'),
  );
}

void main().catch((error: Error) => {
  process.stderr.write(error instanceof BenchSetupError ? `${error.message}\n` : `${error.stack}\n`);
  process.exitCode = 1;
});
