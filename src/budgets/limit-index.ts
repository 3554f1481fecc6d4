import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { BudgetLedger } from '../storage/ports/budget-ledger';
import { ChangeFeed } from '../storage/ports/change-feed';
import { CostLedger } from '../storage/ports/cost-ledger';
import { Ledger } from '../storage/ports/ledger';
import type { VirtualKey } from '../virtual-keys/domain/virtual-key';

/** Change-feed entities of the two ledgers' limits. */
export const BUDGET_LIMIT_ENTITY = 'budget';
export const COST_LIMIT_ENTITY = 'cost';
export type LimitLedger = typeof BUDGET_LIMIT_ENTITY | typeof COST_LIMIT_ENTITY;

/** A full reload now and then, in case a change-feed event was missed (the feed is at-least-once, not exactly). */
const RESYNC_MS = 5 * 60_000;
const PAGE = 1000;

/**
 * Which scopes have a limit, on each ledger, kept in memory (docs/budgets.md, "The request path"): loaded
 * at start, changed at once on the replica that sets a limit and on the others through the change feed
 * (within a second), reloaded whole every five minutes. The request path asks it, never the store,
 * whether a request must be capped (strict mode) or an unpriced model refused: one reserve and one
 * settle per request, and no reads.
 */
@Injectable()
export class LimitIndex implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(LimitIndex.name);
  private readonly limited: Record<LimitLedger, Set<string>> = { budget: new Set(), cost: new Set() };
  /** Scopes changed while a full reload was in flight: its snapshot may predate them. */
  private changedDuringReload: Array<[LimitLedger, string]> | null = null;
  private unsubscribe: (() => void) | null = null;
  private resync: NodeJS.Timeout | null = null;

  constructor(
    private readonly tokens: BudgetLedger,
    private readonly costs: CostLedger,
    private readonly changes: ChangeFeed,
  ) {}

  async onModuleInit(): Promise<void> {
    this.unsubscribe = this.changes.subscribe((event) => {
      if (event.entity !== BUDGET_LIMIT_ENTITY && event.entity !== COST_LIMIT_ENTITY) return;
      this.changedDuringReload?.push([event.entity, event.id]);
      void this.refresh(event.entity, event.id);
    });
    await this.reload();
    this.resync = setInterval(() => {
      this.reload().catch((error: Error) => this.logger.error(`could not reload budget limits: ${error.message}`));
    }, RESYNC_MS).unref();
  }

  onApplicationShutdown(): void {
    this.unsubscribe?.();
    if (this.resync) clearInterval(this.resync);
  }

  /**
   * The limited scopes among a key's: on the token ledger (whether any), on the cost ledger (the
   * first, or null). A key's own budget counts at once, before its scope's limit reaches the index.
   */
  of(key: VirtualKey, scopes: string[]): { tokens: boolean; cost: string | null } {
    const own = scopes[0];
    const tokens = key.budget.totalTokens !== null || scopes.some((s) => this.limited.budget.has(s));
    const cost = key.budget.totalUsdMicros !== null ? own : (scopes.find((s) => this.limited.cost.has(s)) ?? null);
    return { tokens, cost };
  }

  /** The first of `scopes` with a limit on either ledger, or null. */
  limitedScope(scopes: string[]): string | null {
    return scopes.find((s) => this.limited.budget.has(s) || this.limited.cost.has(s)) ?? null;
  }

  /** A limit set on this replica: applied here at once (the feed tells the others). */
  apply(ledger: LimitLedger, scope: string, limit: number | null): void {
    if (limit === null) this.limited[ledger].delete(scope);
    else this.limited[ledger].add(scope);
  }

  private async refresh(ledger: LimitLedger, scope: string): Promise<void> {
    try {
      const found = await this.ledgerOf(ledger).get(scope);
      this.apply(ledger, scope, found?.limit ?? null);
    } catch (error) {
      this.logger.error(`could not refresh the limit of ${scope}: ${(error as Error).message}`);
    }
  }

  private async reload(): Promise<void> {
    const changed: Array<[LimitLedger, string]> = [];
    this.changedDuringReload = changed;
    try {
      const [budget, cost] = await Promise.all([this.limitedScopes(this.tokens), this.limitedScopes(this.costs)]);
      this.limited.budget = budget;
      this.limited.cost = cost;
    } finally {
      this.changedDuringReload = null;
    }
    await Promise.all(changed.map(([ledger, scope]) => this.refresh(ledger, scope)));
  }

  private async limitedScopes(ledger: Ledger): Promise<Set<string>> {
    const scopes = new Set<string>();
    let cursor: string | null = null;
    do {
      const page = await ledger.list(null, PAGE, cursor);
      for (const s of page.items) if (s.limit !== null) scopes.add(s.scope);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return scopes;
  }

  private ledgerOf(ledger: LimitLedger): Ledger {
    return ledger === BUDGET_LIMIT_ENTITY ? this.tokens : this.costs;
  }
}
