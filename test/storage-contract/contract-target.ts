import { StorageBackend } from '../../src/storage/ports/storage-backend';

/**
 * How the storage contract suite reaches one backend. Each `<backend>.contract-spec.ts` builds one of
 * these and calls `describeStorageContract(target)` from `./contract`.
 */
export interface ContractTarget {
  /** The backend's name (as it reports it). */
  name: string;
  /** Tells apart two targets of one backend in test names (e.g. an in-memory SQLite database). */
  variant?: string;
  /** True when several instances opened on one store see each other's data (sqlite, postgres,
   * mongodb, redis). False for memory and state, which are single-process. */
  shared: boolean;
  /** True when only virtual keys survive a close + reopen (state); ledgers/audit live in memory. */
  persistsKeysOnly?: boolean;
  /** False for memory: nothing survives a close. */
  persistent: boolean;
  /**
   * Prepares a fresh, empty, isolated store (unique file, schema, key prefix or database) and returns
   * `open()`, which opens one more independent instance (its own connection) on that same store, and
   * `teardown()`, which removes the store after every opened instance has been closed.
   */
  prepare(): Promise<{ open(): Promise<StorageBackend>; teardown(): Promise<void> }>;
}
