import { Injectable } from '@nestjs/common';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AuditService } from '../audit/audit.service';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { Page } from '../common/page';
import { BudgetLedger } from '../storage/ports/budget-ledger';
import { CostLedger } from '../storage/ports/cost-ledger';
import { ChangeFeed } from '../storage/ports/change-feed';
import { Ledger, LedgerScope } from '../storage/ports/ledger';
import { BUDGET_LIMIT_ENTITY, COST_LIMIT_ENTITY, LimitIndex, LimitLedger } from '../budgets/limit-index';
import { SCOPE_FORMAT, ScopeType, formatPeriod, isScope, parsePeriod } from './domain/scopes';

export type LedgerUnit = 'tokens' | 'usd_micros';

/** A scope as the admin API shows it; amounts carry the unit in their names (`spent_tokens`, `spent_usd_micros`). */
export type ScopeView = Record<string, string | number | null>;

/**
 * The admin side of one ledger (docs/budgets.md): list, read, set a limit (with an optional `reset_every`
 * window), reset spend: TokenLimits on the token ledger, CostLimits on the cost ledger. Every change
 * is audited as `admin.<entity>.<action>` with the actor and before/after.
 */
export abstract class ScopeLimits {
  constructor(
    private readonly ledger: Ledger,
    readonly unit: LedgerUnit,
    private readonly entity: LimitLedger,
    private readonly audit: AuditService,
    private readonly limits: LimitIndex,
    private readonly changes: ChangeFeed,
  ) {}

  async list(type: ScopeType | undefined, prefix: string | undefined, limit: number, cursor: string | null): Promise<Page<ScopeView>> {
    if (type !== undefined && prefix !== undefined && !prefix.startsWith(`${type}:`)) {
      throw new GatewayError(ErrorCode.InvalidRequest, `prefix must start with "${type}:" when type is ${type}`, 'prefix');
    }
    const page = await this.ledger.list(prefix ?? (type ? `${type}:` : null), limit, cursor);
    return { items: page.items.map((s) => this.view(s)), nextCursor: page.nextCursor };
  }

  async get(scope: string): Promise<ScopeView> {
    const found = await this.ledger.get(checkScope(scope));
    if (found === null) throw notFound(scope);
    return this.view(found);
  }

  /** `resetEvery`: undefined keeps the scope's window, null makes the limit a lifetime one. */
  async set(scope: string, limit: number | null, resetEvery: string | null | undefined, actor: AdminActor): Promise<ScopeView> {
    checkScope(scope);
    const periodMs = resetEvery == null ? null : parsePeriod(resetEvery);
    if (resetEvery != null && periodMs === null) {
      throw new GatewayError(ErrorCode.InvalidRequest, 'reset_every must look like 30m, 1h, 1d, 7d or 30d', 'reset_every');
    }
    const before = await this.ledger.get(scope);
    const after = await this.ledger.setLimit(scope, limit, resetEvery === undefined ? (before?.periodMs ?? null) : periodMs);
    await this.announce(scope, after.limit);
    await this.record('set', scope, actor, { before: before && this.view(before), after: this.view(after) });
    return this.view(after);
  }

  async reset(scope: string, actor: AdminActor): Promise<ScopeView> {
    const before = await this.ledger.get(checkScope(scope));
    const after = before === null ? null : await this.ledger.resetSpent(scope);
    if (before === null || after === null) throw notFound(scope);
    await this.record('reset', scope, actor, { before: this.view(before), after: this.view(after) });
    return this.view(after);
  }

  /** A key's own budget (`budget.total_*` of the key) as the limit of `key:<id>`, keeping its window. */
  async applyKeyLimit(keyId: string, limit: number | null): Promise<void> {
    const scope = `key:${keyId}`;
    const current = await this.ledger.get(scope);
    if (current === null && limit === null) return;
    if (current !== null && current.limit === limit) return;
    await this.ledger.setLimit(scope, limit, current?.periodMs ?? null);
    await this.announce(scope, limit);
  }

  /** A limit changed: known here at once, and to every replica through the change feed (LimitIndex). */
  private async announce(scope: string, limit: number | null): Promise<void> {
    this.limits.apply(this.entity, scope, limit);
    await this.changes.publish({ entity: this.entity, id: scope });
  }

  view(s: LedgerScope): ScopeView {
    const u = this.unit;
    return {
      scope: s.scope,
      [`limit_${u}`]: s.limit,
      [`spent_${u}`]: s.spent,
      [`reserved_${u}`]: s.reserved,
      [`remaining_${u}`]: s.limit === null ? null : Math.max(0, s.limit - s.spent - s.reserved),
      reset_every: s.periodMs === null ? null : formatPeriod(s.periodMs),
      window_start: s.periodMs === null ? null : s.windowStart,
      window_ends_at: s.periodMs === null ? null : s.windowStart + s.periodMs,
      updated_at: s.updatedAt,
    };
  }

  private record(action: string, scope: string, actor: AdminActor, payload: Record<string, unknown>): Promise<void> {
    return this.audit.recordNow({ kind: `admin.${this.entity}.${action}`, payload: { actor, scope, ...payload } });
  }
}

function checkScope(scope: string): string {
  if (!isScope(scope)) throw new GatewayError(ErrorCode.InvalidRequest, `scope must be ${SCOPE_FORMAT}`, 'scope');
  return scope;
}

function notFound(scope: string): GatewayError {
  return new GatewayError(ErrorCode.NotFound, `scope '${scope}' has no limit and no recorded usage`);
}

/** The token ledger's limits (`/admin/budgets`, a key's `budget.total_tokens`). */
@Injectable()
export class TokenLimits extends ScopeLimits {
  constructor(ledger: BudgetLedger, audit: AuditService, limits: LimitIndex, changes: ChangeFeed) {
    super(ledger, 'tokens', BUDGET_LIMIT_ENTITY, audit, limits, changes);
  }
}

/** The cost ledger's limits in USD micros (`/admin/costs`, a key's `budget.total_usd_micros`). */
@Injectable()
export class CostLimits extends ScopeLimits {
  constructor(ledger: CostLedger, audit: AuditService, limits: LimitIndex, changes: ChangeFeed) {
    super(ledger, 'usd_micros', COST_LIMIT_ENTITY, audit, limits, changes);
  }
}
