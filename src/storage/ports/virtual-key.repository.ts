import { Page } from '../../common/page';
import { VirtualKey, VirtualKeyFilter } from '../../virtual-keys/domain/virtual-key';

/**
 * Storage port for virtual keys. Every adapter must behave identically (test/storage-contract).
 * Errors: `create` throws DuplicateError (storage-errors.ts) when the id or the token hash already exists.
 */
export abstract class VirtualKeyRepository {
  abstract create(key: VirtualKey): Promise<void>;
  /** Replaces the stored key with the same id. Returns false when there is none. Throws Conflict when
   * the new token hash belongs to another key. */
  abstract update(key: VirtualKey): Promise<boolean>;
  abstract get(id: string): Promise<VirtualKey | null>;
  abstract findByTokenHash(tokenHash: string): Promise<VirtualKey | null>;
  abstract delete(id: string): Promise<boolean>;
  /** Ordered by id ascending (keyset paging: keys added while paging never make a key repeat). */
  abstract list(filter: VirtualKeyFilter, limit: number, cursor: string | null): Promise<Page<VirtualKey>>;
  /** Every key, for the in-memory index and for migration. */
  abstract listAll(): Promise<VirtualKey[]>;
  abstract count(): Promise<number>;
  /**
   * Bootstrap rule (docs/storage.md): if the store holds no key, writes `keys` and returns how many were
   * written; if it holds any, writes nothing and returns 0.
   */
  abstract seedIfEmpty(keys: VirtualKey[]): Promise<number>;
}
