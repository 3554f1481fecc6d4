import { createHash } from 'node:crypto';
import { LessThan, MoreThan } from 'typeorm';
import { ChangeEvent, ChangeFeed, ChangeListener } from '../../ports/change-feed';
import { ChangeLogEntity } from './entities/change-log.entity';
import { TypeormStore } from './typeorm-store';

/** Listener bookkeeping shared by both feeds. */
abstract class TypeormChangeFeed extends ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  abstract close(): Promise<void>;

  protected deliver(event: ChangeEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // A throwing listener must not starve the others.
      }
    }
  }
}

/** Change log rows older than this are deleted; a replica that stops polling longer misses them. */
const CHANGE_RETENTION_MS = 60_000;
const POLL_BATCH = 1000;

/**
 * SQLite: publishing inserts a change_log row; every instance polls for rows above the last seq it has
 * seen (starting from the maximum at open, so history is not replayed).
 */
export class SqliteChangeFeed extends TypeormChangeFeed {
  private lastSeq = 0;
  private lastPrune = 0;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly store: TypeormStore,
    private readonly pollMs: number,
  ) {
    super();
  }

  static async start(store: TypeormStore, pollMs: number): Promise<SqliteChangeFeed> {
    const feed = new SqliteChangeFeed(store, Math.max(1, pollMs));
    feed.lastSeq = (await store.session((s) => s.manager.maximum(ChangeLogEntity, 'seq'))) ?? 0;
    feed.lastPrune = Date.now();
    feed.schedule();
    return feed;
  }

  async publish(event: ChangeEvent): Promise<void> {
    await this.store.session((s) => s.manager.insert(ChangeLogEntity, { entity: event.entity, id: event.id, at: Date.now() }));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.polling;
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.polling = this.poll().finally(() => this.schedule());
    }, this.pollMs);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    try {
      const rows = await this.store.session(async (s) => {
        const found = await s.manager.find(ChangeLogEntity, {
          where: { seq: MoreThan(this.lastSeq) },
          order: { seq: 'ASC' },
          take: POLL_BATCH,
        });
        if (Date.now() - this.lastPrune >= CHANGE_RETENTION_MS) {
          this.lastPrune = Date.now();
          await s.manager.delete(ChangeLogEntity, { at: LessThan(this.lastPrune - CHANGE_RETENTION_MS) });
        }
        return found;
      });
      for (const row of rows) {
        this.lastSeq = row.seq;
        if (!this.closed) this.deliver({ entity: row.entity, id: row.id });
      }
    } catch {
      // The store is unreachable (ping reports that); the next tick retries from the same seq.
    }
  }
}

/** The slice of the `pg` module this feed uses (typeorm loads it; the project has no @types/pg). */
interface PgClient {
  connect(): Promise<void>;
  query(sql: string): Promise<unknown>;
  end(): Promise<void>;
  escapeIdentifier(name: string): string;
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): this;
  on(event: 'error' | 'end', listener: (error?: Error) => void): this;
  removeAllListeners(): this;
}

export interface PgModule {
  Client: new (config: { connectionString: string; connectionTimeoutMillis?: number; application_name?: string }) => PgClient;
}

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;

/** NOTIFY channel of one schema, so gateways (and test runs) on other schemas do not hear each other.
 * Channel names are identifiers: at most 63 bytes. */
export function channelFor(schema: string): string {
  const channel = `ditto_changes_${schema}`;
  return Buffer.byteLength(channel) <= 63 ? channel : `ditto_changes_${createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

/**
 * PostgreSQL: LISTEN on a dedicated client (a pooled connection would be handed to other queries and
 * lose the subscription), NOTIFY through the pool. The client reconnects with backoff when it drops.
 */
export class PostgresChangeFeed extends TypeormChangeFeed {
  private client: PgClient | null = null;
  private retry: NodeJS.Timeout | null = null;
  private closed = false;

  private constructor(
    private readonly store: TypeormStore,
    private readonly pg: PgModule,
    private readonly dsn: string,
    private readonly channel: string,
    private readonly connectTimeoutMs: number,
  ) {
    super();
  }

  static async start(store: TypeormStore, pg: PgModule, dsn: string, schema: string, connectTimeoutMs: number): Promise<PostgresChangeFeed> {
    const feed = new PostgresChangeFeed(store, pg, dsn, channelFor(schema), connectTimeoutMs);
    await feed.listen();
    return feed;
  }

  async publish(event: ChangeEvent): Promise<void> {
    const payload = JSON.stringify({ entity: event.entity, id: event.id });
    await this.store.session((s) => s.rows('SELECT pg_notify($1, $2)', [this.channel, payload]));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    const client = this.client;
    this.client = null;
    if (client) await discard(client);
  }

  private async listen(): Promise<void> {
    const client = new this.pg.Client({
      connectionString: this.dsn,
      connectionTimeoutMillis: this.connectTimeoutMs,
      application_name: 'ditto-gateway-changes',
    });
    client.on('notification', (message) => {
      if (message.channel === this.channel && message.payload !== undefined) this.receive(message.payload);
    });
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(this.channel)}`);
    } catch (error) {
      await discard(client);
      throw error;
    }
    if (this.closed) return discard(client);
    this.client = client;
  }

  private lost(client: PgClient): void {
    if (this.client !== client) return; // still connecting (listen() handles it) or already replaced
    this.client = null;
    void discard(client);
    this.reconnect(RECONNECT_MIN_MS);
  }

  private reconnect(delayMs: number): void {
    if (this.closed) return;
    this.retry = setTimeout(() => {
      this.listen().catch(() => {
        this.reconnect(Math.min(delayMs * 2, RECONNECT_MAX_MS));
      });
    }, delayMs);
    this.retry.unref();
  }

  private receive(payload: string): void {
    let event: unknown;
    try {
      event = JSON.parse(payload);
    } catch {
      return;
    }
    const { entity, id } = (event ?? {}) as Partial<ChangeEvent>;
    if (typeof entity === 'string' && typeof id === 'string') this.deliver({ entity, id });
  }
}

async function discard(client: PgClient): Promise<void> {
  client.removeAllListeners();
  client.on('error', () => undefined);
  await client.end().catch(() => undefined);
}
