/**
 * The load generator of `npm run bench`: wrk, a C program outside Node, so the load does not cost the
 * orchestrating Node process a core of its own (autocannon did, and capped the bare proxy on a 2-core
 * machine). Where `taskset` is available the targets run on one core and everything that makes the load
 * (wrk, the mock upstreams, the TTFB client, the orchestrator itself) on another.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';

/** A problem with the machine rather than the gateway: reported as one line, without a stack. */
export class BenchSetupError extends Error {}

/** The wrk script that POSTs BENCH_BODY and prints the results as JSON (source tree: not copied to dist/). */
const WRK_SCRIPT = path.resolve(__dirname, '../../bench/wrk/post.lua');

function wrkVersion(): string | null {
  const result = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (result.error) return null;
  // `wrk debian/4.1.0-3+b2 [epoll] Copyright …` (and exit code 1: wrk has no real --version).
  return /^wrk (\S+)/m.exec(`${result.stdout}${result.stderr}`)?.[1] ?? 'unknown version';
}

function aptInstallWrk(): boolean {
  if (process.getuid?.() !== 0 || spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).error) return false;
  process.stderr.write('wrk is missing: apt-get install -y wrk\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'wrk'], { stdio: 'inherit', env }).status === 0;
  // A fresh container has no package lists yet.
  return install() || (spawnSync('apt-get', ['update'], { stdio: 'inherit', env }).status === 0 && install());
}

/** wrk's version, after installing wrk with apt-get when it is missing and this process may. */
export function ensureWrk(): string {
  const version = wrkVersion() ?? (aptInstallWrk() ? wrkVersion() : null);
  if (version === null) {
    throw new BenchSetupError(
      'npm run bench needs wrk (a load generator outside Node) on the PATH: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk) or run the bench as root where apt-get is available',
    );
  }
  return version;
}

export interface Pinning {
  /** The core of the measured processes (bare proxies, gateways); null without taskset or a second core. */
  targetCore: string | null;
  /** The core of wrk, the mock upstreams, the TTFB client and the orchestrator. */
  loadCore: string | null;
}

/** `0,2-4` → [0, 2, 3, 4]. */
function parseCpuList(list: string): number[] {
  return list
    .trim()
    .split(',')
    .flatMap((part) => {
      const [from, to] = part.split('-').map(Number);
      return Number.isInteger(from) ? Array.from({ length: (Number.isInteger(to) ? to : from) - from + 1 }, (_, i) => from + i) : [];
    });
}

/**
 * The first two cores this process may run on, the first for the targets and the second for the load;
 * pins this process to the load's core. No pinning without taskset or with a single core.
 */
export function pinCores(): Pinning {
  const affinity = spawnSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' });
  const cores = affinity.status === 0 ? parseCpuList(affinity.stdout.split(':').pop() ?? '') : [];
  if (cores.length < 2) return { targetCore: null, loadCore: null };
  const pinning = { targetCore: String(cores[0]), loadCore: String(cores[1]) };
  spawnSync('taskset', ['-a', '-cp', pinning.loadCore, String(process.pid)], { stdio: 'ignore' });
  return pinning;
}

/** The command line that runs `command` on `core` (as it is without one). */
export function onCore(core: string | null, command: string, args: string[]): [string, string[]] {
  return core === null ? [command, args] : ['taskset', ['-c', core, command, ...args]];
}

export interface WrkResult {
  requests: number;
  rps: number;
  /** Latencies in milliseconds; NaN when no request completed. */
  p50: number;
  p99: number;
  errors: number;
}

/** One wrk run (one thread, `connections` connections) of POST `body` to `url`; each connection pausing `delayMs` between requests when given. */
export function runWrk(options: {
  url: string;
  connections: number;
  durationS: number;
  body: string;
  authorization?: string;
  core: string | null;
  delayMs?: number;
}): Promise<WrkResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.durationS}s`, '--timeout', '10s', '-s', WRK_SCRIPT, options.url];
  const [command, argv] = onCore(options.core, 'wrk', args);
  const child = spawn(command, argv, {
    env: { PATH: process.env.PATH ?? '', BENCH_BODY: options.body, BENCH_AUTHORIZATION: options.authorization ?? '', BENCH_DELAY_MS: String(options.delayMs ?? 0) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = /^BENCH_RESULT (\{.*\})$/m.exec(out);
      if (code !== 0 || !line) {
        reject(new Error(`wrk exited with ${code}: ${out.slice(-500)}`));
        return;
      }
      const r = JSON.parse(line[1]) as Record<string, number>;
      resolve({
        requests: r.requests,
        rps: Math.round(r.requests / (r.duration_us / 1e6)),
        p50: r.requests ? r.p50_us / 1000 : NaN,
        p99: r.requests ? r.p99_us / 1000 : NaN,
        errors: r.connect_errors + r.read_errors + r.write_errors + r.timeouts + r.non2xx,
      });
    });
  });
}
