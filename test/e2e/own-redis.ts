import { ChildProcess, spawn } from 'node:child_process';

/**
 * A throw-away redis-server of a test's own (never the machine's shared one), in memory only unless
 * `persistIn` names a directory: then with an append-only file fsynced on every write, so a server
 * killed and started again there comes back with every write it answered.
 */
export async function startRedis(port: number, persistIn?: string): Promise<ChildProcess> {
  const persistence = persistIn ? ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', persistIn] : ['--appendonly', 'no'];
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    redis.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
    redis.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out.slice(-300)}`)));
  });
  return redis;
}

/** Kills it (SIGKILL: no shutdown save) and waits for it to be gone. */
export async function killRedis(redis: ChildProcess): Promise<void> {
  if (redis.exitCode !== null || redis.signalCode !== null) return;
  const stopped = new Promise((resolve) => redis.once('exit', resolve));
  redis.kill('SIGKILL');
  await stopped;
}
