import * as fs from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { quit } from './redis.backend';
import { withoutPassword } from '../../redact';
import { CachePurgeFilter, CachedResponse } from '../../../cache/domain/cached-response';
import { ResponseCacheStore } from '../../ports/response-cache-store';

const SCRIPTS = { set: 'cache-set.lua', purge: 'cache-purge.lua' } as const;
const COMMANDS = { set: 'dittoCacheSet', purge: 'dittoCachePurge' } as const;
type ScriptCall = (numKeys: number, ...args: Array<string | number | Buffer>) => Promise<unknown>;

/** Index members a purge handles per script call, so a large purge never blocks the server for long. */
const PURGE_BATCH = 500;
const MAX_RETRY_DELAY_MS = 2000;

/** The JSON stored beside the raw body. */
type StoredMeta = Omit<CachedResponse, 'body'>;

function isStoredMeta(value: unknown): value is StoredMeta {
  const v = value as StoredMeta | null;
  return (
    typeof v === 'object' && v !== null && typeof v.status === 'number' && typeof v.headers === 'object' && v.headers !== null &&
    typeof v.keyId === 'string' && typeof v.storedAt === 'number' && typeof v.expiresAt === 'number'
  );
}

/**
 * L2 in redis/valkey: on the store's command connection when the store is that redis, else on a
 * connection of its own (CACHE_REDIS_URL). Each entry is a hash under `<prefix>:e:<request
 * hash>` — `meta` (JSON), `body` (the raw bytes), `key` and `model` (for purges) — expiring at the
 * entry's expiresAt. Purges walk index sets (`<prefix>:idx:all`, `:idx:key:<id>`, `:idx:model:<name>`)
 * sorted by expiry, never the keyspace: see lua/cache-set.lua and lua/cache-purge.lua.
 */
export class RedisResponseCacheStore extends ResponseCacheStore {
  private closing: Promise<void> | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    /** A lookup that takes longer is a miss: the request does not wait on a slow L2. */
    private readonly lookupTimeoutMs: number,
    /** Whether close() quits the connection (it was opened for this store, not shared). */
    private readonly ownsConnection = true,
  ) {
    super();
    for (const [name, file] of Object.entries(SCRIPTS) as Array<[keyof typeof SCRIPTS, string]>) {
      if (COMMANDS[name] in redis) continue;
      redis.defineCommand(COMMANDS[name], { lua: fs.readFileSync(path.join(__dirname, 'lua', file), 'utf8') });
    }
  }

  async get(hash: string): Promise<CachedResponse | null> {
    const [meta, body] = await withTimeout(this.redis.hmgetBuffer(this.entryKey(hash), 'meta', 'body'), this.lookupTimeoutMs);
    if (meta === null || body === null) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(meta.toString('utf8'));
    } catch {
      parsed = null;
    }
    // Written by another version, or damaged: a miss, which the next store overwrites.
    if (!isStoredMeta(parsed)) return null;
    return { ...parsed, body };
  }

  async set(hash: string, entry: CachedResponse): Promise<void> {
    const now = Date.now();
    const ttlMs = Math.ceil(entry.expiresAt - now);
    if (ttlMs <= 0) return;
    const { status, headers, usage, keyId, tenantId, model, storedAt, expiresAt } = entry;
    const meta: StoredMeta = { status, headers, usage, keyId, tenantId, model, storedAt, expiresAt };
    const keys = [this.entryKey(hash), this.allIndex(), this.keyIndex(entry.keyId)];
    if (entry.model !== null) keys.push(this.modelIndex(entry.model));
    await this.run('set', keys, [ttlMs, entry.expiresAt, now, hash, JSON.stringify(meta), entry.body, entry.keyId, entry.model ?? '']);
  }

  async purge(filter: CachePurgeFilter): Promise<number> {
    const [index, kind] =
      filter.keyId !== undefined
        ? [this.keyIndex(filter.keyId), 'key']
        : filter.model !== undefined
          ? [this.modelIndex(filter.model), 'model']
          : [this.allIndex(), 'all'];
    let offset = 0;
    let purged = 0;
    for (;;) {
      const reply = await this.run('purge', [index], [this.entryPrefix(), offset, PURGE_BATCH, filter.keyId ?? '', filter.model ?? '', kind]);
      const [deleted, kept, walked] = reply as [number, number, number];
      purged += deleted;
      offset += kept;
      if (walked < PURGE_BATCH) return purged;
    }
  }

  close(): Promise<void> {
    this.closing ??= this.ownsConnection ? quit(this.redis) : Promise.resolve();
    return this.closing;
  }

  private run(name: keyof typeof SCRIPTS, keys: string[], args: Array<string | number | Buffer>): Promise<unknown> {
    return (this.redis as unknown as Record<string, ScriptCall>)[COMMANDS[name]](keys.length, ...keys, ...args);
  }

  private entryPrefix(): string {
    return `${this.prefix}:e:`;
  }

  private entryKey(hash: string): string {
    return this.entryPrefix() + hash;
  }

  private allIndex(): string {
    return `${this.prefix}:idx:all`;
  }

  private keyIndex(keyId: string): string {
    return `${this.prefix}:idx:key:${keyId}`;
  }

  private modelIndex(model: string): string {
    return `${this.prefix}:idx:model:${model}`;
  }
}

export interface RedisCacheConnectionOptions {
  url: string;
  prefix: string;
  /** Connect and command timeout: a slow L2 must cost a request little more than a miss. */
  timeoutMs: number;
  /** Connection errors (ioredis keeps reconnecting); the message never holds the URL's password. */
  onError(error: Error): void;
}

/**
 * Connects the L2 store. Never rejects for an unreachable server: it waits up to `timeoutMs` for the
 * connection, then returns the store anyway, which reconnects in the background; until it is up,
 * commands fail at once (no offline queue) and the cache counts them as misses.
 */
export async function openRedisResponseCacheStore(options: RedisCacheConnectionOptions): Promise<RedisResponseCacheStore> {
  const redis = new Redis(options.url, {
    enableOfflineQueue: false,
    connectTimeout: options.timeoutMs,
    commandTimeout: options.timeoutMs,
    // How long a closing socket may take to end. ioredis arms this timer even when the socket is already
    // gone (closing while reconnecting), and it holds the process open for its whole length.
    disconnectTimeout: options.timeoutMs,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RETRY_DELAY_MS),
  });
  redis.on('error', (error: Error) => options.onError(new Error(withoutPassword(error.message, options.url))));
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, options.timeoutMs);
    redis.once('ready', done);
    function done(): void {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    }
  });
  return new RedisResponseCacheStore(redis, options.prefix, options.timeoutMs);
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
