import { Page, encodeCursor } from '../../../common/page';
import { ScopeRateLimit, ScopeRateLimitRepository } from '../../ports/scope-rate-limit.repository';
import { rateLimitFromDoc, rateLimitToDoc } from './mongoose.mappers';
import { MongooseModels, RateLimitDoc, retryOnDuplicate } from './mongoose.schemas';
import { readCursor } from '../../../common/errors/storage-errors';

const isString = (v: unknown): v is string => typeof v === 'string';

/** One document per scope; the unique index on `scope` keeps concurrent puts to one document. */
export class MongooseRateLimitRepository extends ScopeRateLimitRepository {
  constructor(private readonly models: MongooseModels) {
    super();
  }

  async get(scope: string): Promise<ScopeRateLimit | null> {
    const doc = await this.models.rateLimits.findOne({ scope }).lean<RateLimitDoc>();
    return doc ? rateLimitFromDoc(doc) : null;
  }

  async put(limit: ScopeRateLimit): Promise<void> {
    await retryOnDuplicate(() => this.models.rateLimits.replaceOne({ scope: limit.scope }, rateLimitToDoc(limit), { upsert: true }));
  }

  async delete(scope: string): Promise<boolean> {
    const result = await this.models.rateLimits.deleteOne({ scope });
    return result.deletedCount === 1;
  }

  async list(limit: number, cursor: string | null): Promise<Page<ScopeRateLimit>> {
    const size = Math.max(1, limit);
    const after = readCursor(cursor, isString);
    const docs = await this.models.rateLimits
      .find(after === null ? {} : { scope: { $gt: after } })
      .sort({ scope: 1 })
      .limit(size + 1)
      .lean<RateLimitDoc[]>();
    const items = docs.slice(0, size).map(rateLimitFromDoc);
    return { items, nextCursor: docs.length > size ? encodeCursor(items[items.length - 1].scope) : null };
  }
}
