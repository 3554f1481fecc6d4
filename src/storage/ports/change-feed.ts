/** A change made by an admin on some replica, announced so every replica can refresh its caches. */
export interface ChangeEvent {
  /** What changed: `virtual_key`, `budget`, `cost`, … */
  entity: string;
  /** Its id (key id, scope). */
  id: string;
}

export type ChangeListener = (event: ChangeEvent) => void;

/**
 * Cross-replica change notification (docs/storage.md): every listener of every instance sharing the store,
 * the publisher's own included, receives each published event within 1 s. Delivery is at-least-once;
 * listeners must be idempotent (reload the entity).
 */
export abstract class ChangeFeed {
  abstract publish(event: ChangeEvent): Promise<void>;
  /** Returns a function that removes the listener. */
  abstract subscribe(listener: ChangeListener): () => void;
}
