import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Counter } from 'prom-client';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AuditService } from '../audit/audit.service';
import { SCOPE_FORMAT, isScope, scopesOf } from '../ledger/domain/scopes';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { Page } from '../common/page';
import { MetricsService } from '../metrics/metrics.service';
import { ChangeFeed } from '../storage/ports/change-feed';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { UNLIMITED } from './domain/rate-decision';
import { toRateLimitView } from './dto/rate-limit.dto';
import { RateDecision, RateLimitRule, RateLimiterStore } from '../storage/ports/rate-limiter-store';
import { ScopeRateLimit, ScopeRateLimitRepository } from '../storage/ports/scope-rate-limit.repository';

export const RATE_LIMIT_ENTITY = 'rate_limit';
/** Full reload now and then: a safety net for change events lost while a feed was reconnecting. */
const RESYNC_MS = 60_000;
const LOAD_PAGE = 1000;

type Limits = Pick<ScopeRateLimit, 'rpm' | 'tpm'>;

/** A request admitted under rate limits: what was counted, to correct once its real usage is known. */
export interface RateAdmission {
  rules: RateLimitRule[];
  tokens: number;
  admittedAt: number;
  /** The `x-ratelimit-*` headers of the admission, for the response. */
  headers: Record<string, string>;
}

/**
 * Requests- and tokens-per-minute limits, checked before the budget reserve (docs/architecture.md): a key's own
 * `limits` on `key:<id>`, and the limits set with `PUT /admin/limits/:scope` on any of its scopes.
 * The scope limits are held in memory (loaded at start, kept current by the change feed), so finding
 * a request's rules costs no storage round trip, and a request with no rules never reaches the limiter.
 */
@Injectable()
export class RateLimitsService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RateLimitsService.name);
  private byScope = new Map<string, ScopeRateLimit>();
  private unsubscribe: (() => void) | null = null;
  private resync: NodeJS.Timeout | null = null;
  /** Scopes changed while a full reload was in flight: its snapshot may predate them. */
  private changedDuringReload: Set<string> | null = null;
  private readonly refreshes = new Map<string, number>();
  private readonly refused: Counter<'scope_type' | 'kind'>;

  constructor(
    private readonly repository: ScopeRateLimitRepository,
    private readonly changes: ChangeFeed,
    private readonly limiter: RateLimiterStore,
    private readonly audit: AuditService,
    private readonly metrics: MetricsService,
  ) {
    this.refused = metrics.counter('ditto_rate_limited_total', 'Requests refused by a rate limit, by scope type and limit kind', ['scope_type', 'kind']);
  }

  /** Loads every scope limit (a failure stops the boot: running without them would not limit) and follows the change feed. */
  async onModuleInit(): Promise<void> {
    this.unsubscribe = this.changes.subscribe((event) => {
      if (event.entity !== RATE_LIMIT_ENTITY) return;
      this.changedDuringReload?.add(event.id);
      void this.refresh(event.id);
    });
    await this.reload();
    this.resync = setInterval(() => {
      this.reload().catch((error: Error) => this.logger.error(`could not reload rate limits: ${error.message}`));
    }, RESYNC_MS).unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.unsubscribe?.();
    if (this.resync) clearInterval(this.resync);
    await this.limiter.close();
  }

  /**
   * The rules of a request by `key`, synchronously and from memory: the key's own limits (tightened by
   * a limit set on `key:<id>`, if any) and the limits set on its tenant, project and user scopes.
   * Empty: the key is not rate limited; skip the limiter.
   */
  rulesFor(key: VirtualKey): RateLimitRule[] {
    const own = key.limits.rpm !== null || key.limits.tpm !== null;
    if (this.byScope.size === 0) return own ? [{ scope: `key:${key.id}`, rpm: key.limits.rpm, tpm: key.limits.tpm }] : [];
    const rules: RateLimitRule[] = [];
    const scopes = scopesOf(key);
    for (const scope of scopes) {
      const set = this.byScope.get(scope);
      const limits = scope === scopes[0] ? tightest(own ? key.limits : null, set ?? null) : (set ?? null);
      if (limits !== null && (limits.rpm !== null || limits.tpm !== null)) rules.push({ scope, rpm: limits.rpm, tpm: limits.tpm });
    }
    return rules;
  }

  /**
   * Admits a request of `tokens` estimated tokens (prompt + output) under `rules`, counting it in
   * every rule, or refuses it without counting anything (throw `rateLimitError(decision)`). No rules:
   * admitted without asking the limiter. A limiter that does not answer: 503 storage_unavailable.
   */
  async admit(key: VirtualKey, tokens: number, rules: RateLimitRule[] = this.rulesFor(key)): Promise<RateDecision> {
    if (rules.length === 0) return UNLIMITED;
    let decision: RateDecision;
    try {
      decision = await this.limiter.admit(rules, tokens);
    } catch (error) {
      this.metrics.storageErrors.inc({ operation: 'rate_limit.admit' });
      this.logger.error(`rate limit admission failed: ${(error as Error).message}`);
      throw new GatewayError(ErrorCode.StorageUnavailable, 'the rate-limit store did not answer; the request was not forwarded');
    }
    if (!decision.ok && decision.scope !== null && decision.kind !== null) {
      this.refused.inc({ scope_type: decision.scope.slice(0, decision.scope.indexOf(':')), kind: decision.kind });
    }
    return decision;
  }

  /**
   * The proxy's rate-limit stage. A key without rules is not looked at further (no round trip):
   * null. Otherwise one admission counting the request and, when a tpm rule applies, `tokens()` (its
   * estimate, computed only then); 429 `rate_limited` carrying the `x-ratelimit-*` and `retry-after`
   * headers when a limit is reached.
   */
  async admitRequest(key: VirtualKey, tokens: () => number): Promise<RateAdmission | null> {
    const rules = this.rulesFor(key);
    if (rules.length === 0) return null;
    const counted = rules.some((rule) => rule.tpm !== null) ? tokens() : 0;
    const admittedAt = Date.now();
    const decision = await this.admit(key, counted, rules);
    const headers = rateLimitHeaders(decision);
    if (!decision.ok) throw rateLimitError(decision, headers);
    return { rules, tokens: counted, admittedAt, headers };
  }

  /** tpm counts the estimate at admission; once the request is charged, the difference is given back (or added). */
  finishRequest(admission: RateAdmission, charged: number): void {
    if (admission.tokens === charged || !admission.rules.some((rule) => rule.tpm !== null)) return;
    void this.adjust(admission.rules, charged - admission.tokens, admission.admittedAt);
  }

  /**
   * Corrects the tokens counted at admission (`admittedAt`, epoch ms) by `delta` = real usage −
   * estimate. Never rejects: a failure is logged and counted (the response must not fail for it).
   */
  async adjust(rules: RateLimitRule[], delta: number, admittedAt: number): Promise<void> {
    if (rules.length === 0 || delta === 0) return;
    try {
      await this.limiter.adjustTokens(rules, delta, admittedAt);
    } catch (error) {
      this.metrics.storageErrors.inc({ operation: 'rate_limit.adjust' });
      this.logger.warn(`rate limit token correction failed: ${(error as Error).message}`);
    }
  }

  // The admin side: GET/PUT/DELETE /admin/limits.

  list(limit: number, cursor: string | null): Promise<Page<ScopeRateLimit>> {
    return this.repository.list(limit, cursor);
  }

  async get(scope: string): Promise<ScopeRateLimit> {
    const found = await this.repository.get(checkScope(scope));
    if (found === null) throw notFound(scope);
    return found;
  }

  async set(scope: string, limits: { rpm?: number | null; tpm?: number | null }, actor: AdminActor): Promise<ScopeRateLimit> {
    checkScope(scope);
    const after: ScopeRateLimit = { scope, rpm: limits.rpm ?? null, tpm: limits.tpm ?? null, updatedAt: Date.now() };
    if (after.rpm === null && after.tpm === null) {
      throw new GatewayError(ErrorCode.InvalidRequest, `set rpm and/or tpm; DELETE /admin/limits/${encodeURIComponent(scope)} removes the limits`);
    }
    const before = await this.repository.get(scope);
    await this.repository.put(after);
    await this.announce(scope, after, 'set', actor, { before: before && toRateLimitView(before), after: toRateLimitView(after) });
    return after;
  }

  async remove(scope: string, actor: AdminActor): Promise<void> {
    const before = await this.repository.get(checkScope(scope));
    if (before === null || !(await this.repository.delete(scope))) throw notFound(scope);
    await this.announce(scope, null, 'delete', actor, { before: toRateLimitView(before) });
  }

  /**
   * Applies the change here at once (the caller's next request sees it), publishes it (the other
   * replicas reload the scope) and writes the admin audit event.
   */
  private async announce(scope: string, limit: ScopeRateLimit | null, action: string, actor: AdminActor, payload: Record<string, unknown>): Promise<void> {
    this.refreshes.delete(scope);
    this.apply(scope, limit);
    await this.changes.publish({ entity: RATE_LIMIT_ENTITY, id: scope });
    await this.audit.recordNow({ kind: `admin.rate_limit.${action}`, tenantId: tenantOf(scope), payload: { actor, scope, ...payload } });
  }

  /** Applies a scope's current stored limits (or their removal). */
  private async refresh(scope: string): Promise<void> {
    // Only the latest refresh of a scope applies: an earlier, slower read must not undo a newer one.
    const generation = (this.refreshes.get(scope) ?? 0) + 1;
    this.refreshes.set(scope, generation);
    try {
      const limit = await this.repository.get(scope);
      if (this.refreshes.get(scope) !== generation) return;
      this.refreshes.delete(scope);
      this.apply(scope, limit);
    } catch (error) {
      this.logger.error(`could not reload the rate limits of '${scope}' after a change: ${(error as Error).message}`);
    }
  }

  private apply(scope: string, limit: ScopeRateLimit | null): void {
    if (limit === null) this.byScope.delete(scope);
    else this.byScope.set(scope, limit);
  }

  private async reload(): Promise<void> {
    const changed = (this.changedDuringReload = new Set());
    try {
      const all = new Map<string, ScopeRateLimit>();
      let cursor: string | null = null;
      do {
        const page: Page<ScopeRateLimit> = await this.repository.list(LOAD_PAGE, cursor);
        for (const limit of page.items) all.set(limit.scope, limit);
        cursor = page.nextCursor;
      } while (cursor !== null);
      this.byScope = all;
    } finally {
      this.changedDuringReload = null;
    }
    await Promise.all([...changed].map((scope) => this.refresh(scope)));
  }
}

/** Per kind, the lower of two limits (null = none). */
function tightest(a: Limits | null, b: Limits | null): Limits | null {
  if (a === null || b === null) return a ?? b;
  const min = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.min(x, y));
  return { rpm: min(a.rpm, b.rpm), tpm: min(a.tpm, b.tpm) };
}

function checkScope(scope: string): string {
  if (!isScope(scope)) throw new GatewayError(ErrorCode.InvalidRequest, `scope must be ${SCOPE_FORMAT}`, 'scope');
  return scope;
}

function notFound(scope: string): GatewayError {
  return new GatewayError(ErrorCode.NotFound, `scope '${scope}' has no rate limits`);
}

/** The tenant a tenant, project or user scope belongs to (audit events are filterable by tenant). */
function tenantOf(scope: string): string | null {
  const match = /^(?:tenant:(.+)|(?:project|user):([^/]+)\/)/.exec(scope);
  return match ? (match[1] ?? match[2]) : null;
}

/**
 * OpenAI's rate-limit headers for an answer: `x-ratelimit-limit-*` / `x-ratelimit-remaining-*` for
 * each kind some rule limits (the tightest rule), and on a refusal `retry-after` (whole seconds,
 * rounded up) with `retry-after-ms` (which OpenAI's SDKs read first), or `x-should-retry: false`
 * when the request can never fit.
 */
export function rateLimitHeaders(decision: RateDecision): Record<string, string> {
  const headers: Record<string, string> = {};
  if (decision.limitRequests !== null) {
    headers['x-ratelimit-limit-requests'] = String(decision.limitRequests);
    headers['x-ratelimit-remaining-requests'] = String(decision.remainingRequests ?? 0);
  }
  if (decision.limitTokens !== null) {
    headers['x-ratelimit-limit-tokens'] = String(decision.limitTokens);
    headers['x-ratelimit-remaining-tokens'] = String(decision.remainingTokens ?? 0);
  }
  if (!decision.ok) {
    if (Number.isFinite(decision.retryAfterMs)) {
      headers['retry-after'] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
      headers['retry-after-ms'] = String(Math.max(1, Math.ceil(decision.retryAfterMs)));
    } else {
      headers['x-should-retry'] = 'false';
    }
  }
  return headers;
}

/** The 429 `rate_limited` of a refusal, naming the scope and the limit it hit (OpenAI's `type`: `requests` or `tokens`). */
export function rateLimitError(decision: RateDecision, headers: Record<string, string> = {}): GatewayError {
  const kind = decision.kind ?? 'requests';
  const limit = kind === 'requests' ? decision.limitRequests : decision.limitTokens;
  let message = `Rate limit reached for ${decision.scope ?? 'this key'}: ${limit ?? 0} ${kind} per minute.`;
  if (!Number.isFinite(decision.retryAfterMs)) {
    message += ' This request alone is estimated above that limit and cannot be admitted; lower max_tokens or shorten the prompt.';
  } else {
    message += ` Please try again in ${Math.max(1, Math.ceil(decision.retryAfterMs / 1000))}s.`;
  }
  return new GatewayError(ErrorCode.RateLimited, message, null, kind, headers);
}
