import { Page, encodeCursor } from '../../../common/page';
import { ScopeRateLimit, ScopeRateLimitRepository } from '../../ports/scope-rate-limit.repository';
import { RateLimitEntity } from './entities/rate-limit.entity';
import { toScopeRateLimit } from './mappers/rate-limit.mapper';
import { TypeormStore } from './typeorm-store';
import { readCursor } from '../../../common/errors/storage-errors';

const isString = (v: unknown): v is string => typeof v === 'string';

/** One row per scope in `rate_limits`; a put is one upsert, so concurrent puts never clash. */
export class TypeormRateLimitRepository extends ScopeRateLimitRepository {
  private readonly table: string;

  constructor(private readonly store: TypeormStore) {
    super();
    this.table = store.table('rate_limits');
  }

  async get(scope: string): Promise<ScopeRateLimit | null> {
    const row = await this.store.session((s) => s.manager.findOneBy(RateLimitEntity, { scope }));
    return row ? toScopeRateLimit(row) : null;
  }

  async put(limit: ScopeRateLimit): Promise<void> {
    await this.store.session((s) =>
      s.run(
        `INSERT INTO ${this.table} (scope, rpm, tpm, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (scope) DO UPDATE SET rpm = excluded.rpm, tpm = excluded.tpm, updated_at = excluded.updated_at`,
        [limit.scope, limit.rpm, limit.tpm, limit.updatedAt],
      ),
    );
  }

  async delete(scope: string): Promise<boolean> {
    const result = await this.store.session((s) => s.manager.delete(RateLimitEntity, { scope }));
    return (result.affected ?? 0) > 0;
  }

  async list(limit: number, cursor: string | null): Promise<Page<ScopeRateLimit>> {
    const size = Math.max(1, limit);
    const after = readCursor(cursor, isString);
    const rows = await this.store.session((s) => {
      const query = s.manager.createQueryBuilder(RateLimitEntity, 'r').orderBy('r.scope', 'ASC').limit(size + 1);
      if (after !== null) query.andWhere('r.scope > :after', { after });
      return query.getMany();
    });
    const items = rows.slice(0, size).map(toScopeRateLimit);
    return { items, nextCursor: rows.length > size ? encodeCursor(items[items.length - 1].scope) : null };
  }
}
