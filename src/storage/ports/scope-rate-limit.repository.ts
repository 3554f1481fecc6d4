import { Page } from '../../common/page';

/**
 * Requests-per-minute and tokens-per-minute limits of one scope (`tenant:<t>`, `project:<t>/<p>`,
 * `user:<t>/<u>`, `key:<id>`), set with `PUT /admin/limits/:scope`. Null = no limit of that kind.
 * A key's own `limits` live on the key; this holds the limits set per scope.
 */
export interface ScopeRateLimit {
  scope: string;
  rpm: number | null;
  tpm: number | null;
  /** Epoch ms. */
  updatedAt: number;
}

/** Port: where scope rate limits are kept (every backend; shared by the replicas of a shared store). */
export abstract class ScopeRateLimitRepository {
  abstract get(scope: string): Promise<ScopeRateLimit | null>;
  /** Creates or replaces the scope's limits. */
  abstract put(limit: ScopeRateLimit): Promise<void>;
  /** False when the scope had no limits. */
  abstract delete(scope: string): Promise<boolean>;
  /** Ordered by scope; `cursor` is the previous page's `nextCursor`. */
  abstract list(limit: number, cursor: string | null): Promise<Page<ScopeRateLimit>>;
}
