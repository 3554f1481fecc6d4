import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
export const SHIPPED_CONF = path.join(ROOT, 'deploy/nginx.conf');

/** The nginx binary on PATH or in Debian's place, or null when nginx is not installed. */
export function findNginx(): string | null {
  for (const candidate of ['nginx', '/usr/sbin/nginx']) {
    const probe = spawnSync(candidate, ['-v'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  return null;
}

/** `nginx version: nginx/1.22.1` → `1.22.1` */
export function nginxVersion(bin: string): string {
  const probe = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  return /nginx\/(\S+)/.exec(`${probe.stdout}${probe.stderr}`)?.[1] ?? 'unknown';
}

/**
 * deploy/nginx.conf, the file compose mounts, made runnable as an unprivileged process on this host.
 * Every other line is used as shipped, above all the whole `location /` block (buffering, timeouts,
 * retries, headers). Replaced, each exactly once or the function throws (so a change to the shipped
 * file cannot silently leave the test running something else):
 * - `pid /var/run/nginx.pid;` → a pid file in `dir` (the shipped path is the system nginx's, root only);
 * - the two upstream `server gateway-N:8080 resolve …;` lines → `server 127.0.0.1:<port> …;` with the
 *   same parameters but `resolve`, which re-resolves Docker DNS names and needs nginx ≥ 1.27.3
 *   (Debian 12 ships 1.22); the replicas here have fixed loopback addresses;
 * - `listen 80;` → `listen 127.0.0.1:<port>;` (no privileged port, loopback only);
 * and added, first in `http`: the temp paths (request bodies above `client_body_buffer_size` are
 * written there) in `dir`, where Debian's build would use /var/lib/nginx.
 * `resolver 127.0.0.11` (Docker's DNS) stays: without `resolve` nothing asks it anything.
 */
export function renderNginxConf(shipped: string, upstreams: string[], listenPort: number, dir: string): string {
  let text = shipped;
  const replaceOnce = (pattern: RegExp, replacement: string | ((...m: string[]) => string), what: string) => {
    const matches = text.match(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`)) ?? [];
    if (matches.length !== 1) throw new Error(`deploy/nginx.conf: expected one ${what}, found ${matches.length}`);
    text = text.replace(pattern, replacement as string);
  };
  replaceOnce(/^pid \S+;$/m, `pid ${dir}/nginx.pid;`, 'pid directive');
  replaceOnce(/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${listenPort};`, '`listen 80;`');
  const servers = [...text.matchAll(/^(\s*)server gateway-\d+:8080 resolve( [^;]*)?;$/gm)];
  if (servers.length !== upstreams.length) {
    throw new Error(`deploy/nginx.conf: expected ${upstreams.length} upstream server lines, found ${servers.length}`);
  }
  servers.forEach((m, i) => (text = text.replace(m[0], `${m[1]}server ${upstreams[i]}${m[2] ?? ''};`)));
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `    ${t}_temp_path ${dir}/${t}_temp;`).join('\n');
  replaceOnce(/^http \{$/m, `http {\n${temp}`, '`http {`');
  return text;
}

export interface RunningNginx {
  url: string;
  process: ChildProcess;
  /** Lines nginx wrote so far (access log on stdout as JSON, error log on stderr). */
  output(): string[];
  stop(): Promise<void>;
}

/** Runs nginx in the foreground with the rendered config in a temp prefix; resolves once it answers. */
export async function startNginx(bin: string, upstreams: string[], port: number): Promise<RunningNginx> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-nginx-'));
  // Started as root, nginx runs its workers as `nobody`, which must reach the temp paths inside.
  chmodSync(dir, 0o755);
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, renderNginxConf(readFileSync(SHIPPED_CONF, 'utf8'), upstreams, port, dir));
  // stdout and stderr go to a file: the config logs to /dev/stdout and /dev/stderr, which nginx opens
  // by name, and a Node pipe (a socket) cannot be opened that way (ENXIO); a file can, like Docker's pipe.
  const log = path.join(dir, 'output.log');
  const out = openSync(log, 'a');
  const child = spawn(bin, ['-p', `${dir}/`, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'], {
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  const output = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${output().join(' | ')}`);
    const ok = await fetch(`${url}/nginx-health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() - started > 10_000) throw new Error(`nginx did not answer on ${url}: ${output().join(' | ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    process: child,
    output,
    stop: async () => {
      // SIGQUIT: graceful; the workers finish what they serve.
      if (child.exitCode === null) child.kill('SIGQUIT');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
