import { Redis, RedisOptions } from 'ioredis';
import { redactUrl, withoutPassword } from '../../redact';
import { StorageBackend, StorageOptions } from '../../ports/storage-backend';
import { RedisAuditLogRepository } from './redis-audit-log.repository';
import { RedisChangeFeed } from './redis-change-feed';
import { RedisJobLock } from './redis-job-lock';
import { RedisKeys } from './redis-keys';
import { RedisAccountingLedger, RedisBudgetLedger, RedisCostLedger } from './redis-ledger';
import { RedisRateLimitRepository } from './redis-rate-limit.repository';
import { defineScripts } from './redis-scripts';
import { RedisVirtualKeyRepository } from './redis-virtual-key.repository';

const MAX_RETRY_DELAY_MS = 2000;

/**
 * How the command connection is made: no auto-pipelining (the hot path batches itself,
 * RedisAccountingLedger, and deferring every write to the next tick only delayed the reserves that
 * requests wait for: docs/benchmarks.md), timeouts from REDIS_TIMEOUT_MS, reconnects with a capped
 * backoff. The application's connection (`RedisModule` of @nestjs-modules/ioredis) uses these too.
 */
export function commandConnectionOptions(options: StorageOptions): RedisOptions {
  const { timeoutMs } = options.redis;
  return {
    enableAutoPipelining: false,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RETRY_DELAY_MS),
  };
}

/**
 * Opens the redis/valkey backend (`redis://` or `rediss://` for TLS) on a command connection of its
 * own plus one pub/sub connection for the change feed. Until open has succeeded nothing retries, so
 * an unreachable server rejects within about `timeoutMs`; afterwards both connections reconnect on
 * their own with a capped backoff.
 */
export async function openRedisBackend(options: StorageOptions): Promise<StorageBackend> {
  const { url, timeoutMs } = options.redis;
  let opened = false;
  const commands = new Redis(url, {
    ...commandConnectionOptions(options),
    lazyConnect: true,
    retryStrategy: (attempt) => (opened ? Math.min(attempt * 100, MAX_RETRY_DELAY_MS) : null),
  });
  // Without a listener ioredis prints connection errors to the console. Open reports its own failure;
  // later outages surface through ping() (/ready) and the failing commands themselves.
  commands.on('error', () => undefined);
  try {
    await connect(commands, timeoutMs);
  } catch (err) {
    commands.disconnect();
    throw failure(url, err);
  }
  try {
    const backend = await redisBackend(commands, options);
    opened = true;
    return backend;
  } catch (err) {
    commands.disconnect();
    throw err;
  }
}

/** Connects once, pings, and lets go (the storage selection's probe). */
export async function probeRedis(options: StorageOptions): Promise<void> {
  const { url, timeoutMs } = options.redis;
  const client = new Redis(url, { ...commandConnectionOptions(options), lazyConnect: true, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await connect(client, timeoutMs);
    await client.ping();
  } catch (err) {
    throw failure(url, err);
  } finally {
    await quit(client);
  }
}

/**
 * The ports on a command connection: its scripts, the pub/sub connection (a duplicate) and the change
 * feed. Closing the backend quits both connections.
 */
export async function redisBackend(commands: Redis, options: StorageOptions): Promise<StorageBackend> {
  const { url, prefix, timeoutMs } = options.redis;
  const subscriber = commands.duplicate({ lazyConnect: true });
  subscriber.on('error', () => undefined);
  try {
    await commands.ping();
    await connect(subscriber, timeoutMs);
    defineScripts(commands);
    const keys = new RedisKeys(prefix);
    const changes = new RedisChangeFeed(commands, subscriber, keys.changes);
    await changes.start();
    return new RedisStorageBackend(url, prefix, commands, subscriber, keys, changes);
  } catch (err) {
    subscriber.disconnect();
    throw failure(url, err);
  }
}

function failure(url: string, err: unknown): Error {
  return new Error(`REDIS_URL ${redactUrl(url)}: ${withoutPassword(describe(err), url)}`);
}

class RedisStorageBackend implements StorageBackend {
  readonly name = 'redis' as const;
  readonly keys: RedisVirtualKeyRepository;
  readonly budgets: RedisBudgetLedger;
  readonly costs: RedisCostLedger;
  readonly accounting: RedisAccountingLedger;
  readonly audit: RedisAuditLogRepository;
  readonly rateLimits: RedisRateLimitRepository;
  readonly locks: RedisJobLock;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly url: string,
    private readonly prefix: string,
    private readonly commands: Redis,
    private readonly subscriber: Redis,
    keys: RedisKeys,
    readonly changes: RedisChangeFeed,
  ) {
    this.keys = new RedisVirtualKeyRepository(commands, keys);
    this.budgets = new RedisBudgetLedger(commands, keys);
    this.costs = new RedisCostLedger(commands, keys);
    this.accounting = new RedisAccountingLedger(commands, keys);
    this.audit = new RedisAuditLogRepository(commands, keys);
    this.rateLimits = new RedisRateLimitRepository(commands, keys);
    this.locks = new RedisJobLock(commands, keys);
  }

  async ping(): Promise<void> {
    await this.commands.ping();
  }

  details(): Record<string, unknown> {
    return { url: redactUrl(this.url), prefix: this.prefix };
  }

  close(): Promise<void> {
    // Accounting calls of this very turn are answered before QUIT instead of failing on a closed connection.
    this.closing ??= this.accounting.flush().then(() => Promise.all([quit(this.subscriber), quit(this.commands)])).then(() => undefined);
    return this.closing;
  }
}

/** Connects once, answering the connection's own error (ECONNREFUSED, WRONGPASS, TLS…) rather than
 * ioredis's generic "Connection is closed", and giving up after `timeoutMs` whatever the stage. */
async function connect(client: Redis, timeoutMs: number): Promise<void> {
  let cause: Error | null = null;
  const onError = (err: Error): void => {
    cause ??= err;
  };
  client.on('error', onError);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([client.connect(), timeout]);
  } catch (err) {
    throw cause ?? err;
  } finally {
    clearTimeout(timer);
    client.off('error', onError);
  }
}

/** Quits politely when connected, else drops the connection (never waits on a dead server). */
export async function quit(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
