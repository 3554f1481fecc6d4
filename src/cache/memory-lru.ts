import { CachePurgeFilter, CachedResponse, matchesPurge } from './domain/cached-response';

/** What an entry costs beyond its body and headers (the object, the map slot, the key string). */
const ENTRY_OVERHEAD_BYTES = 256;

/** The bytes an entry is counted for: its body, its headers and a fixed overhead. */
export function entrySize(entry: CachedResponse): number {
  let headers = 0;
  for (const [name, value] of Object.entries(entry.headers)) headers += name.length + value.length;
  return entry.body.length + headers + ENTRY_OVERHEAD_BYTES;
}

export interface LruStats {
  entries: number;
  bytes: number;
  maxEntries: number;
  maxBytes: number;
}

/**
 * The in-process (L1) cache: least recently used entries go first once either bound, entries or
 * bytes, would be exceeded. An entry larger than the byte bound on its own is refused. Expired entries
 * are misses and are dropped when read; until then they count against the bounds like any other.
 */
export class MemoryLru {
  /** Map order is the recency order: the first entry is the least recently used. */
  private readonly entries = new Map<string, { entry: CachedResponse; size: number }>();
  private bytes = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
  ) {}

  get(hash: string, now = Date.now()): CachedResponse | null {
    const slot = this.entries.get(hash);
    if (!slot) return null;
    this.remove(hash);
    if (slot.entry.expiresAt <= now) return null;
    this.entries.set(hash, slot);
    this.bytes += slot.size;
    return slot.entry;
  }

  /** Stores (or replaces) an entry, evicting the least recently used to make room. False when it cannot fit at all. */
  set(hash: string, entry: CachedResponse): boolean {
    const size = entrySize(entry);
    this.remove(hash);
    if (size > this.maxBytes || this.maxEntries < 1) return false;
    while (this.entries.size >= this.maxEntries || this.bytes + size > this.maxBytes) {
      const oldest = this.entries.keys().next().value as string;
      this.remove(oldest);
    }
    this.entries.set(hash, { entry, size });
    this.bytes += size;
    return true;
  }

  delete(hash: string): boolean {
    return this.remove(hash);
  }

  /** Removes the entries matching the filter (all when it is empty); returns how many. */
  purge(filter: CachePurgeFilter): number {
    let removed = 0;
    for (const [hash, slot] of this.entries) {
      if (matchesPurge(slot.entry, filter) && this.remove(hash)) removed++;
    }
    return removed;
  }

  stats(): LruStats {
    return { entries: this.entries.size, bytes: this.bytes, maxEntries: this.maxEntries, maxBytes: this.maxBytes };
  }

  private remove(hash: string): boolean {
    const slot = this.entries.get(hash);
    if (!slot) return false;
    this.entries.delete(hash);
    this.bytes -= slot.size;
    return true;
  }
}
