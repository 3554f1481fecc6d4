import { Page, encodeCursor } from '../../../common/page';
import { VirtualKey, VirtualKeyFilter } from '../../../virtual-keys/domain/virtual-key';
import { VirtualKeyRepository } from '../../ports/virtual-key.repository';
import { keyIdTaken, readCursor, tokenTaken } from '../../../common/errors/storage-errors';

const isString = (v: unknown): v is string => typeof v === 'string';

export function matchesKeyFilter(key: VirtualKey, filter: VirtualKeyFilter): boolean {
  return (
    (filter.tenantId === undefined || key.tenantId === filter.tenantId) &&
    (filter.projectId === undefined || key.projectId === filter.projectId) &&
    (filter.userId === undefined || key.userId === filter.userId) &&
    (filter.enabled === undefined || key.enabled === filter.enabled)
  );
}

/**
 * Keys in a Map. `onChange` lets the state backend persist after every mutation; it runs before the
 * mutating call resolves, so a caller that saw success knows the change is on disk.
 */
export class MemoryVirtualKeyRepository extends VirtualKeyRepository {
  private readonly byId = new Map<string, VirtualKey>();
  private readonly idByHash = new Map<string, string>();

  constructor(
    initial: VirtualKey[] = [],
    private readonly onChange: (all: VirtualKey[]) => Promise<void> = async () => undefined,
  ) {
    super();
    for (const key of initial) this.put(key);
  }

  async create(key: VirtualKey): Promise<void> {
    if (this.byId.has(key.id)) throw keyIdTaken(key.id);
    if (this.idByHash.has(key.tokenHash)) throw tokenTaken();
    this.put(key);
    await this.persist();
  }

  async update(key: VirtualKey): Promise<boolean> {
    const current = this.byId.get(key.id);
    if (!current) return false;
    const owner = this.idByHash.get(key.tokenHash);
    if (owner !== undefined && owner !== key.id) throw tokenTaken();
    this.idByHash.delete(current.tokenHash);
    this.put(key);
    await this.persist();
    return true;
  }

  async get(id: string): Promise<VirtualKey | null> {
    return clone(this.byId.get(id));
  }

  async findByTokenHash(tokenHash: string): Promise<VirtualKey | null> {
    const id = this.idByHash.get(tokenHash);
    return id === undefined ? null : clone(this.byId.get(id));
  }

  async delete(id: string): Promise<boolean> {
    const current = this.byId.get(id);
    if (!current) return false;
    this.byId.delete(id);
    this.idByHash.delete(current.tokenHash);
    await this.persist();
    return true;
  }

  async list(filter: VirtualKeyFilter, limit: number, cursor: string | null): Promise<Page<VirtualKey>> {
    const after = readCursor(cursor, isString);
    const matching = [...this.byId.values()]
      .filter((k) => (after === null || k.id > after) && matchesKeyFilter(k, filter))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const items = matching.slice(0, limit).map((k) => clone(k)!);
    const nextCursor = matching.length > limit ? encodeCursor(items[items.length - 1].id) : null;
    return { items, nextCursor };
  }

  async listAll(): Promise<VirtualKey[]> {
    return [...this.byId.values()].map((k) => clone(k)!);
  }

  async count(): Promise<number> {
    return this.byId.size;
  }

  async seedIfEmpty(keys: VirtualKey[]): Promise<number> {
    if (this.byId.size > 0 || keys.length === 0) return 0;
    for (const key of keys) this.put(key);
    await this.persist();
    return keys.length;
  }

  private put(key: VirtualKey): void {
    const copy = clone(key)!;
    this.byId.set(copy.id, copy);
    this.idByHash.set(copy.tokenHash, copy.id);
  }

  private persist(): Promise<void> {
    return this.onChange([...this.byId.values()]);
  }
}

function clone<T>(value: T | undefined): T | null {
  return value === undefined ? null : structuredClone(value);
}
