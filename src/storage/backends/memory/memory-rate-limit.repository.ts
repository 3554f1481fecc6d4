import { Page, encodeCursor } from '../../../common/page';
import { ScopeRateLimit, ScopeRateLimitRepository } from '../../ports/scope-rate-limit.repository';
import { readCursor } from '../../../common/errors/storage-errors';

const isString = (v: unknown): v is string => typeof v === 'string';

/** Scope rate limits in a Map: in process only, gone on restart (memory and state backends). */
export class MemoryRateLimitRepository extends ScopeRateLimitRepository {
  private readonly byScope = new Map<string, ScopeRateLimit>();

  async get(scope: string): Promise<ScopeRateLimit | null> {
    const limit = this.byScope.get(scope);
    return limit ? { ...limit } : null;
  }

  async put(limit: ScopeRateLimit): Promise<void> {
    this.byScope.set(limit.scope, { ...limit });
  }

  async delete(scope: string): Promise<boolean> {
    return this.byScope.delete(scope);
  }

  async list(limit: number, cursor: string | null): Promise<Page<ScopeRateLimit>> {
    const size = Math.max(1, limit);
    const after = readCursor(cursor, isString);
    const matching = [...this.byScope.values()]
      .filter((l) => after === null || l.scope > after)
      .sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : 0));
    const items = matching.slice(0, size).map((l) => ({ ...l }));
    return { items, nextCursor: matching.length > size ? encodeCursor(items[items.length - 1].scope) : null };
  }
}
