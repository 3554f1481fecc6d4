import { ChangeEvent, ChangeFeed, ChangeListener } from '../../ports/change-feed';
import { num } from './mongoose.mappers';
import { ChangeDoc, CounterDoc, MongooseModels } from './mongoose.schemas';

const COUNTER_ID = 'changes';
const BATCH = 500;
/**
 * How long a missing sequence number is waited for. Two publishers can take seq 5 and 6 and insert 6
 * first; a poller that jumped past 5 would never deliver it. A publisher that died between taking a
 * number and inserting leaves a gap forever, so the wait is bounded.
 */
const GAP_WAIT_MS = 5_000;
/** How long a change is kept: a poller only ever looks a few poll intervals back. */
export const CHANGE_RETENTION_MS = 300_000;
/** How often each instance deletes the changes older than that (the first poll does it at once). */
const PRUNE_EVERY_MS = 60_000;

/**
 * The version-counter change feed (docs/storage.md): publish takes the next number from a counter
 * document and inserts the change under it; every instance polls for numbers above the last one it
 * delivered, starting from the counter's value when it opened. Works on a standalone server, where
 * change streams are unavailable. Each instance also deletes changes older than CHANGE_RETENTION_MS
 * about once a minute: a plain `deleteMany`, where a TTL index would need a server that has them.
 */
export class MongooseChangeFeed extends ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();
  /** Delivered sequence numbers above `last` (there is a gap below them). */
  private readonly delivered = new Set<number>();
  private gapSince: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private prunedAt = 0;

  private constructor(
    private readonly models: MongooseModels,
    private readonly pollMs: number,
    /** Every change numbered up to here has been delivered (or given up on). */
    private last: number,
  ) {
    super();
  }

  static async start(models: MongooseModels, pollMs: number): Promise<MongooseChangeFeed> {
    const counter = await models.counters.findById(COUNTER_ID).lean<CounterDoc>();
    const feed = new MongooseChangeFeed(models, pollMs, counter ? num(counter.seq) : 0);
    feed.schedule();
    return feed;
  }

  async publish(event: ChangeEvent): Promise<void> {
    const counter = await this.models.counters
      .findOneAndUpdate({ _id: COUNTER_ID }, { $inc: { seq: 1 } }, { upsert: true, returnDocument: 'after' })
      .lean<CounterDoc>();
    if (!counter) throw new Error('change counter upsert returned no document');
    await this.models.changes.create({ seq: counter.seq, entity: event.entity, entity_id: event.id, at: new Date() });
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops polling and waits for a poll in flight, so the connection can be closed after it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.poll().finally(() => {
        this.running = null;
        this.schedule();
      });
    }, this.pollMs);
    // The poller alone must not keep a process alive.
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    await this.prune();
    let docs: ChangeDoc[];
    try {
      const seq = this.delivered.size > 0 ? { $gt: this.last, $nin: [...this.delivered] } : { $gt: this.last };
      docs = await this.models.changes.find({ seq }).sort({ seq: 1 }).limit(BATCH).lean<ChangeDoc[]>();
    } catch {
      // The store is unreachable for now (ping and /ready report that); the next poll catches up.
      return;
    }
    for (const doc of docs) {
      const seq = num(doc.seq);
      if (this.stopped || this.delivered.has(seq)) continue;
      this.delivered.add(seq);
      this.deliver({ entity: doc.entity, id: doc.entity_id });
    }
    this.advance();
  }

  private async prune(): Promise<void> {
    const now = Date.now();
    if (now - this.prunedAt < PRUNE_EVERY_MS) return;
    this.prunedAt = now;
    // Every instance prunes: deleting what another one just deleted is harmless.
    await this.models.changes.deleteMany({ at: { $lt: new Date(now - CHANGE_RETENTION_MS) } }).catch(() => undefined);
  }

  private advance(): void {
    while (this.delivered.delete(this.last + 1)) this.last++;
    if (this.delivered.size === 0) {
      this.gapSince = null;
      return;
    }
    const now = Date.now();
    this.gapSince ??= now;
    if (now - this.gapSince < GAP_WAIT_MS) return;
    // Give up on the missing numbers below the lowest delivered one.
    this.last = Math.min(...this.delivered) - 1;
    this.gapSince = null;
    this.advance();
  }

  private deliver(event: ChangeEvent): void {
    for (const listener of this.listeners) {
      try {
        listener({ ...event });
      } catch {
        // A throwing listener must not starve the others.
      }
    }
  }
}
