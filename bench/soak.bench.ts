/**
 * `npm run bench:soak`: does the gateway's memory stay flat under a steady load? For each backend in
 * `BENCH_BACKENDS` (default sqlite), one after the other: its saturation rate is measured with wrk
 * (32 connections, a few seconds), then wrk holds it at half that rate (paced connections) for
 * `BENCH_SOAK_MINUTES` (default 10) while the gateway's resident set size is read from /proc every
 * 5 seconds. The first minute is the warm-up (JIT, pools, caches filling). Between two garbage
 * collections the heap, and with it the RSS, grows and falls back by tens of MiB, so single samples
 * saw up and down; what would show a leak is the level: the figure is how far the median RSS of each
 * later minute strays from the median of the second minute (the largest single sample is shown too).
 * Linux only (/proc).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BODY, KEY, PATH, Target, startGateway, startUpstreams, stopAll } from './gateways';
import { BenchSetupError, ensureWrk, pinCores, runWrk } from './load-generator';
import { recordRun } from './record';

const MINUTES = Number(process.env.BENCH_SOAK_MINUTES ?? 10);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'sqlite').split(',');
const CONNECTIONS = 32;
const SAMPLE_MS = 5000;

/** Resident set size of a process, in MiB. */
function rssMiB(pid: number): number {
  const kB = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kB) / 1024;
}

const medianOf = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

interface Soak {
  backend: string;
  saturationRps: number;
  rps: number;
  errors: number;
  /** Seconds since the paced load began, and the RSS then (MiB). */
  samples: Array<[number, number]>;
  baselineMiB: number;
  /** Median RSS of each minute after the first. */
  minuteMedians: number[];
  /** The largest deviation of a minute's median from the baseline (the second minute's), in percent. */
  maxDeviationPct: number;
}

async function soak(target: Target, backend: string, core: string | null): Promise<Soak> {
  const options = { url: `${target.origin}${PATH}`, body: BODY, authorization: `Bearer ${KEY}`, core };
  await runWrk({ ...options, connections: CONNECTIONS, durationS: 2 });
  const saturation = await runWrk({ ...options, connections: CONNECTIONS, durationS: 5 });
  // Each connection waits after every answer so the 32 together ask for about half the saturation rate.
  const delayMs = Math.max(1, Math.round((CONNECTIONS * 1000) / (saturation.rps / 2)));
  const samples: Array<[number, number]> = [];
  const began = Date.now();
  const timer = setInterval(() => samples.push([Math.round((Date.now() - began) / 1000), rssMiB(target.pid)]), SAMPLE_MS);
  const paced = await runWrk({ ...options, connections: CONNECTIONS, durationS: MINUTES * 60, delayMs }).finally(() => clearInterval(timer));
  const minuteMedians = Array.from({ length: MINUTES - 1 }, (_, i) => medianOf(samples.filter(([s]) => s >= (i + 1) * 60 && s < (i + 2) * 60).map(([, mib]) => mib)));
  const baselineMiB = minuteMedians[0];
  const maxDeviationPct = Math.max(...minuteMedians.map((mib) => (100 * Math.abs(mib - baselineMiB)) / baselineMiB));
  return { backend, saturationRps: saturation.rps, rps: paced.rps, errors: paced.errors, samples, baselineMiB, minuteMedians, maxDeviationPct };
}

async function main(): Promise<void> {
  if (!existsSync('/proc/self/status')) throw new BenchSetupError('npm run bench:soak reads the RSS from /proc: Linux only');
  if (MINUTES < 3) throw new BenchSetupError('BENCH_SOAK_MINUTES must be at least 3 (a minute of warm-up, a minute of baseline, then the soak)');
  const wrk = ensureWrk();
  const pinning = pinCores();
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-bench-soak-'));
  const results: Soak[] = [];
  try {
    await startUpstreams(pinning.loadCore, dir, 1);
    for (const backend of BACKENDS) {
      const target = await startGateway(pinning.targetCore, dir, `gateway (${backend})`, '../src/main.js', backend);
      results.push(await soak(target, backend, pinning.loadCore));
      process.stderr.write(`${backend} done\n`);
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  const table = [
    '| backend | saturation RPS | soak RPS | errors | RSS baseline MiB (median of the 2nd minute) | largest deviation of a later minute\'s median | samples after the 1st minute, min–max MiB |',
    '|---|---|---|---|---|---|---|',
    ...results.map((r) => {
      const later = r.samples.filter(([s]) => s >= 60).map(([, mib]) => mib);
      return `| ${r.backend} | ${r.saturationRps} | ${r.rps} | ${r.errors} | ${r.baselineMiB.toFixed(1)} | ${r.maxDeviationPct.toFixed(1)} % | ${Math.min(...later).toFixed(1)}–${Math.max(...later).toFixed(1)} |`;
    }),
  ].join('\n');
  const traces = results.map((r) => `Median RSS of ${r.backend}, minute 2 to ${MINUTES} (MiB): ${r.minuteMedians.map((mib) => mib.toFixed(1)).join(', ')}`);
  process.stdout.write(`${table}\n\n${traces.join('\n')}\n`);
  recordRun('Soak', { minutes: MINUTES, connections: CONNECTIONS, results }, (machine) =>
    [
      `${machine}; load generator: wrk ${wrk}, ${CONNECTIONS} connections paced at half the saturation rate (measured first, 5 s) for ${MINUTES} minutes; RSS of the gateway's process from /proc every ${SAMPLE_MS / 1000} s. Budgeted key (token and cost budgets, key and tenant scopes), audit on.`,
      '',
      table,
      '',
      ...traces,
    ].join('\n'),
  );
}

void main().catch((error: Error) => {
  process.stderr.write(error instanceof BenchSetupError ? `${error.message}\n` : `${error.stack}\n`);
  process.exitCode = 1;
});
