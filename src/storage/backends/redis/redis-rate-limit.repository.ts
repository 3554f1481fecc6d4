import { ChainableCommander, Redis } from 'ioredis';
import { Page, encodeCursor } from '../../../common/page';
import { ScopeRateLimit, ScopeRateLimitRepository } from '../../ports/scope-rate-limit.repository';
import { RedisKeys } from './redis-keys';
import { scopeAfter } from './redis-ledger';
import { rateLimitFromJson, rateLimitToJson } from './redis-rate-limit.mapper';

/**
 * Scope rate limits as JSON in one hash (scope -> limits) plus a lex-ordered zset of the scopes for
 * keyset paging. Every write changes both in one MULTI, so the two never disagree.
 */
export class RedisRateLimitRepository extends ScopeRateLimitRepository {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    super();
  }

  async get(scope: string): Promise<ScopeRateLimit | null> {
    const json = await this.redis.hget(this.keys.rateLimits.records, scope);
    return json === null ? null : rateLimitFromJson(scope, json);
  }

  async put(limit: ScopeRateLimit): Promise<void> {
    const { records, scopes } = this.keys.rateLimits;
    await execOrThrow(this.redis.multi().hset(records, limit.scope, rateLimitToJson(limit)).zadd(scopes, 0, limit.scope));
  }

  async delete(scope: string): Promise<boolean> {
    const { records, scopes } = this.keys.rateLimits;
    const [removed] = await execOrThrow(this.redis.multi().hdel(records, scope).zrem(scopes, scope));
    return removed === 1;
  }

  async list(limit: number, cursor: string | null): Promise<Page<ScopeRateLimit>> {
    const pageSize = Math.max(1, limit);
    const after = scopeAfter(cursor);
    const { records, scopes } = this.keys.rateLimits;
    const names = await this.redis.zrangebylex(scopes, after === null ? '-' : `(${after}`, '+', 'LIMIT', 0, pageSize + 1);
    const pageNames = names.slice(0, pageSize);
    const docs = pageNames.length === 0 ? [] : await this.redis.hmget(records, ...pageNames);
    const items: ScopeRateLimit[] = [];
    docs.forEach((json, i) => {
      if (json !== null) items.push(rateLimitFromJson(pageNames[i], json)); // deleted since the index was read
    });
    const nextCursor = names.length > pageSize ? encodeCursor({ scope: pageNames[pageNames.length - 1] }) : null;
    return { items, nextCursor };
  }
}

/** The replies of a MULTI, throwing the first command error (EXEC reports them per command). */
async function execOrThrow(multi: ChainableCommander): Promise<unknown[]> {
  const replies = (await multi.exec()) ?? [];
  return replies.map(([err, reply]) => {
    if (err) throw err;
    return reply;
  });
}
