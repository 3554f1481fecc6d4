import { Redis } from 'ioredis';
import { ChangeEvent, ChangeFeed, ChangeListener } from '../../ports/change-feed';

function isChangeEvent(v: unknown): v is ChangeEvent {
  const e = v as Partial<ChangeEvent> | null;
  return typeof e === 'object' && e !== null && typeof e.entity === 'string' && typeof e.id === 'string';
}

/** Redis pub/sub on `<prefix>:changes`. The subscriber connection is dedicated: once subscribed, a
 * Redis connection cannot run other commands. ioredis resubscribes after a reconnect. */
export class RedisChangeFeed extends ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    private readonly channel: string,
  ) {
    super();
  }

  async start(): Promise<void> {
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.deliver(message);
    });
    await this.subscriber.subscribe(this.channel);
  }

  async publish(event: ChangeEvent): Promise<void> {
    await this.publisher.publish(this.channel, JSON.stringify({ entity: event.entity, id: event.id }));
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private deliver(message: string): void {
    let event: unknown;
    try {
      event = JSON.parse(message);
    } catch {
      event = null;
    }
    // Anything else on the channel is not ours to deliver.
    if (!isChangeEvent(event)) return;
    for (const listener of this.listeners) {
      try {
        listener({ entity: event.entity, id: event.id });
      } catch {
        // A throwing listener must not starve the others, nor kill the subscriber's event loop turn.
      }
    }
  }
}
