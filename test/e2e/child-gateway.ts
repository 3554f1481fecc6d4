import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
export const MAIN_JS = path.join(ROOT, 'dist/src/main.js');
export const VERIFY_JS = path.join(ROOT, 'dist/src/audit/audit-verify.cli.js');

/** The child-process tests run the compiled gateway (`npm test` builds it first; else `npm run build`). */
export function requireBuild(): void {
  for (const file of [MAIN_JS, VERIFY_JS]) {
    if (!existsSync(file)) throw new Error(`${path.relative(ROOT, file)} is missing: run \`npm run build\` first`);
  }
}

export interface ChildGateway {
  process: ChildProcess;
  pid: number;
  url: string;
  /** Every JSON log line the child printed so far. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  exited: Promise<number | string>;
}

/**
 * Starts `node dist/src/main.js` (or `main`) with exactly `env` (plus PATH) in `cwd` (no stray `.env`
 * or `gateway.json`), on a free port, and resolves once it logs its listening address.
 */
export async function startChildGateway(env: Record<string, string>, cwd: string, main = MAIN_JS): Promise<ChildGateway> {
  const child = spawn(process.execPath, [main], {
    cwd,
    // No drain period unless a test asks for one: SIGTERM then closes at once.
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (!line.trim()) continue;
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line);
        } catch {
          entry = { level: 'raw', msg: line };
        }
        logs.push(entry);
        const match = /listening on (http:\/\/\S+)/.exec(String(entry.msg ?? ''));
        if (match) resolve(match[1]);
      }
    });
    void exited.then((code) => reject(new Error(`gateway exited (${code}) before listening: ${stderr}${JSON.stringify(logs.slice(-5))}`)));
  });
  return { process: child, pid: child.pid!, url, logs, exited };
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

/** Samples `rssBytes(pid)` every `everyMs` until stopped; `stop()` answers the peak. */
export function sampleRss(pid: number, everyMs = 20): { stop(): number } {
  let peak = rssBytes(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      /* process gone */
    }
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/** Log lines at error level or worse (pino levels as labels). */
export function errorLines(logs: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  return logs.filter((l) => l.level === 'error' || l.level === 'fatal' || l.level === 'raw');
}
