import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

/** Where `scripts/ferretdb.sh install` (and .ci/run) put the FerretDB binary: ignored by git. */
export const FERRETDB_BIN = path.join(ROOT, '.cache/bin/ferretdb');

export interface RunningFerretDB {
  uri: string;
  port: number;
  close(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
      .once('error', reject)
      .listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts the cached FerretDB binary on a free loopback port with the SQLite handler in a new temp
 * directory, the same way `scripts/ferretdb.sh start` does: no telemetry, no debug listener, state
 * and data in that directory. Resolves once it accepts connections; `close()` stops it and removes
 * the directory.
 */
export async function startFerretDB(bin = FERRETDB_BIN): Promise<RunningFerretDB> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-ferretdb-'));
  const port = await freePort();
  const log = path.join(dir, 'ferretdb.log');
  const out = openSync(log, 'a');
  const child: ChildProcess = spawn(
    bin,
    [
      '--handler=sqlite',
      `--sqlite-url=file:${dir}/`,
      `--state-dir=${dir}`,
      `--listen-addr=127.0.0.1:${port}`,
      '--debug-addr=-',
      '--telemetry=disable',
      '--log-level=WARN',
    ],
    { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', out, out] },
  );
  closeSync(out);
  let spawnError: Error | null = null;
  child.once('error', (error) => (spawnError = error));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const started = Date.now();
  while (!(await accepts(port))) {
    if (spawnError !== null || child.exitCode !== null || Date.now() - started > 15_000) {
      child.kill('SIGKILL');
      const output = readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ');
      rmSync(dir, { recursive: true, force: true });
      const cause = (spawnError as Error | null)?.message ?? (output || `exit code ${child.exitCode}`);
      throw new Error(`FerretDB (${bin}) did not start on 127.0.0.1:${port}: ${cause}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    port,
    close: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
