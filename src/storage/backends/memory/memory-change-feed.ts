import { ChangeEvent, ChangeFeed, ChangeListener } from '../../ports/change-feed';

/** Single-process change feed: listeners are called on the next tick, like a remote feed would. */
export class MemoryChangeFeed extends ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();

  async publish(event: ChangeEvent): Promise<void> {
    for (const listener of this.listeners) setImmediate(() => listener({ ...event }));
  }

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
