/**
 * `npm run bench:instructions`: the instructions a non-streamed chat request costs the gateway's
 * process, counted by valgrind's callgrind. CPU time per request moves by ±20–50 % between runs on a
 * shared two-core machine; an instruction count does not depend on what else the machine does.
 *
 * Each target (this build, and with `BENCH_OLD_COMMIT` the builds of those commits) runs alone under
 * `valgrind --tool=callgrind` with collection off: BENCH_INSTR_WARM requests warm the JIT (8 at a
 * time), 200 more run with the instrumentation on, the counters are zeroed, BENCH_INSTR_REQUESTS
 * requests run one at a time and the counters are dumped. The count per request is split into the
 * JIT compiler's share (when optimised code lands is timing, so it moves by ±15 % between runs), GC,
 * and the rest, which repeats within ±2 %: compare builds by it. The load comes from this process
 * (its instructions are not counted); the mock upstream runs in its own.
 *
 * Needs valgrind (Debian package `valgrind`). BENCH_BACKENDS (first entry, default memory),
 * BENCH_BUDGET_MODE and BENCH_ROUNDS (default 2) as in the other benches.
 */
import { execFileSync } from 'node:child_process';
import { Agent, request } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BODY, KEY, LISTENING, PATH, gatewayEnv, start, startUpstreams, stopAll } from './gateways';
import { BenchSetupError } from './load-generator';
import { buildOldCommit } from './old-build';
import { recordRun } from './record';

const WARM = Number(process.env.BENCH_INSTR_WARM ?? 3000);
const REQUESTS = Number(process.env.BENCH_INSTR_REQUESTS ?? 1500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const BACKEND = (process.env.BENCH_BACKENDS ?? 'memory').split(',')[0];
const OLD_COMMITS = (process.env.BENCH_OLD_COMMIT ?? '').split(',').filter(Boolean);
const BUDGET_MODE = process.env.BENCH_BUDGET_MODE;
/** valgrind's vgdb names its pipe after USER and HOST: the gateway's and callgrind_control's must agree. */
const VGDB_ENV = { HOST: '127.0.0.1', USER: process.env.USER || process.env.LOGNAME || 'bench', LOGNAME: process.env.USER || process.env.LOGNAME || 'bench' };

/** Instructions per request, by share (callgrind_annotate's function names). */
interface Count {
  target: string;
  round: number;
  all: number;
  compiler: number;
  gc: number;
  rest: number;
}

const COMPILER = /v8::internal::compiler::|maglev|turboshaft/i;
const GC = /Heap|Scavenge|MarkCompact|Sweeper|Marking|Evacuat|Minor/;

function requireValgrind(): void {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new BenchSetupError('npm run bench:instructions needs valgrind: apt-get install valgrind');
  }
}

/** `count` requests to `origin`, `concurrency` at a time; any answer but 200 stops the run. */
async function drive(origin: string, count: number, concurrency: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(PATH, origin);
  const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) };
  let left = count;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const req = request(url, { method: 'POST', agent, headers }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${origin} answered ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(BODY);
    });
  const worker = async () => {
    while (left-- > 0) await one();
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
}

function callgrindControl(option: string[], pid: number): void {
  const said = execFileSync('callgrind_control', [...option, String(pid)], { env: { ...process.env, ...VGDB_ENV }, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  // callgrind_control exits 0 even when it could not reach the process; it says OK when it did.
  if (!/\bOK\b/.test(said)) throw new Error(`callgrind_control ${option.join(' ')} ${pid}: ${said.trim()}`);
}

/** Resolves once callgrind has written the dump asked for (it does so on its own schedule; the file ends with its totals). */
async function dumped(file: string): Promise<void> {
  for (let waited = 0; waited < 60_000; waited += 200) {
    if (existsSync(file) && /^totals:/m.test(readFileSync(file, 'utf8'))) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`callgrind wrote no dump to ${file} within 60 s`);
}

/** The dump's instructions by share, per request. */
function split(dump: string, target: string, round: number): Count {
  const text = execFileSync('callgrind_annotate', ['--threshold=100', dump], { maxBuffer: 256 * 2 ** 20 }).toString();
  const count: Count = { target, round, all: 0, compiler: 0, gc: 0, rest: 0 };
  for (const line of text.split('\n')) {
    const match = /^\s*([\d,]+) \([^)]*\)\s+(.*)$/.exec(line);
    if (!match) continue;
    const instructions = Number(match[1].replace(/,/g, '')) / REQUESTS;
    const name = match[2];
    if (name.includes('PROGRAM TOTALS')) count.all = instructions;
    else if (COMPILER.test(name)) count.compiler += instructions;
    else if (GC.test(name)) count.gc += instructions;
  }
  if (count.all === 0) throw new Error(`${dump} holds no instructions`);
  count.rest = count.all - count.compiler - count.gc;
  return count;
}

async function measure(target: string, main: string, dir: string, round: number): Promise<Count> {
  const out = path.join(dir, `callgrind-${target.replace(/\W+/g, '-')}-${round}.out`);
  const env = { ...gatewayEnv(dir, BACKEND, BUDGET_MODE ? { BUDGET_MODE } : {}), ...VGDB_ENV };
  const valgrind = ['valgrind', '--quiet', '--tool=callgrind', '--instr-atstart=no', '--smc-check=all-non-file', `--callgrind-out-file=${out}`];
  const { value: origin, pid, child } = await start(null, main, [], env, LISTENING, [], valgrind);
  try {
    await drive(origin, WARM, 8);
    callgrindControl(['-i', 'on'], pid);
    await drive(origin, 200, 1);
    callgrindControl(['-z'], pid);
    await drive(origin, REQUESTS, 1);
    callgrindControl(['-d'], pid);
    await dumped(`${out}.1`);
  } finally {
    await new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(null);
      child.once('exit', resolve).kill('SIGTERM');
      // A second signal skips the drain's grace period (src/main.ts).
      setTimeout(() => child.kill('SIGTERM'), 500);
    });
  }
  // The dump asked for is the first numbered one; the exit writes the unnumbered file.
  return split(`${out}.1`, target, round);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
const thousands = (n: number) => (n / 1000).toFixed(0);

async function main(): Promise<void> {
  requireValgrind();
  const olds = OLD_COMMITS.map(buildOldCommit);
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-bench-instructions-'));
  const counts: Count[] = [];
  try {
    await startUpstreams(null, dir, 1);
    const targets = [{ name: `gateway (${BACKEND})`, main: path.resolve(__dirname, '../src/main.js') }, ...olds.map((old) => ({ name: `${old.commit} (${BACKEND})`, main: old.main }))];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const target of round % 2 ? targets : [...targets].reverse()) {
        counts.push(await measure(target.name, target.main, dir, round));
        process.stderr.write(`round ${round} of ${ROUNDS}: ${target.name} done\n`);
      }
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  const names = [...new Set(counts.map((c) => c.target))];
  const ours = median(counts.filter((c) => c.target === names[0]).map((c) => c.rest));
  const rows = names.map((name) => {
    const mine = counts.filter((c) => c.target === name);
    const rest = median(mine.map((c) => c.rest));
    return `| ${name} | ${thousands(median(mine.map((c) => c.all)))} | ${thousands(median(mine.map((c) => c.compiler)))} | ${thousands(median(mine.map((c) => c.gc)))} | ${thousands(rest)} | ${mine.map((c) => thousands(c.rest)).join(' / ')} | ${(ours / rest).toFixed(2)} |`;
  });
  const table = [
    '| target | all (k) | JIT compiler (k) | GC (k) | rest (k) | rest by round (k) | this build / target (rest) |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  process.stdout.write(`Instructions per non-streamed request (thousands, medians of ${ROUNDS} rounds):\n\n${table}\n`);
  recordRun('Instructions per request', { warm: WARM, requests: REQUESTS, rounds: ROUNDS, backend: BACKEND, budgetMode: BUDGET_MODE, counts }, (machine) =>
    [
      `${machine}; valgrind callgrind, ${WARM} warm-up requests, then ${REQUESTS} counted one at a time; medians of ${ROUNDS} rounds; ${BACKEND} store; BUDGET_MODE ${BUDGET_MODE ?? "each build's default"}. Compare builds by "rest" (without the JIT compiler and GC).`,
      '',
      table,
    ].join('\n'),
  );
}

void main().catch((error: Error) => {
  process.stderr.write(error instanceof BenchSetupError ? `${error.message}\n` : `${error.stack}\n`);
  process.exitCode = 1;
});
