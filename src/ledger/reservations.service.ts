import { Inject, Injectable, Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AuditService } from '../audit/audit.service';
import { heldBackgroundResponse } from '../budgets/accounting.service';
import { budgetsConfig } from '../budgets/budgets.config';
import { AccountingLedger, LedgerAmounts } from '../storage/ports/accounting-ledger';
import { BudgetLedger } from '../storage/ports/budget-ledger';
import { CostLedger } from '../storage/ports/cost-ledger';
import { Reservation } from '../storage/ports/ledger';

const DRY_RUN_ITEMS_MAX = 1000;

export interface LedgerReap {
  count: number;
  items: Reservation[];
}

/**
 * Releases reservations nobody will settle (docs/budgets.md "never leak"): those of a replica that crashed
 * mid-request, on both ledgers. The reaper job does it on a schedule; `POST /admin/reservations/reap`
 * on demand. Releasing is exactly-once per reservation on every backend.
 */
@Injectable()
export class ReservationsService {
  private readonly logger = new Logger(ReservationsService.name);
  /** RESERVATION_TTL_SECS in ms: the age past which a reservation is released. */
  readonly ttlMs: number;

  constructor(
    private readonly budgets: BudgetLedger,
    private readonly costs: CostLedger,
    private readonly accounting: AccountingLedger,
    private readonly audit: AuditService,
    @Inject(budgetsConfig.KEY) settings: ConfigType<typeof budgetsConfig>,
  ) {
    this.ttlMs = settings.reservationTtlMs;
  }

  /**
   * Releases the reservations created before `cutoff` (epoch ms); answers how many, per ledger. Those
   * held for background responses nobody read back (`bg:` ids, docs/budgets.md) are charged first, at
   * what they hold (the worst case): the provider ran them, and a background response is never free.
   */
  async release(cutoff: number): Promise<{ tokens: number; usdMicros: number; background: number }> {
    const background = await this.chargeUnreadBackground(cutoff);
    const [tokens, usdMicros] = await Promise.all([this.budgets.reap(cutoff), this.costs.reap(cutoff)]);
    return { tokens, usdMicros, background };
  }

  /**
   * Charges the background holds created before `cutoff` what they hold, each exactly once (the ledger
   * settles an id once, whoever else reads the response at that moment), with a
   * `proxy.background_expired` audit event each; answers how many it charged.
   */
  private async chargeUnreadBackground(cutoff: number): Promise<number> {
    const [tokens, usdMicros] = await Promise.all([this.budgets.listReservations(cutoff), this.costs.listReservations(cutoff)]);
    const held = new Map<string, { scopes: string[]; amounts: LedgerAmounts }>();
    for (const r of tokens) if (heldBackgroundResponse(r.id) !== null) held.set(r.id, { scopes: r.scopes, amounts: { tokens: r.amount, usdMicros: 0 } });
    for (const r of usdMicros) {
      if (heldBackgroundResponse(r.id) !== null) held.set(r.id, { scopes: r.scopes, amounts: { tokens: held.get(r.id)?.amounts.tokens ?? 0, usdMicros: r.amount } });
    }
    let charged = 0;
    for (const [id, { scopes, amounts }] of held) {
      const settled = await this.accounting.settle(id, amounts);
      if (!settled.tokens && !settled.usdMicros) continue;
      charged++;
      const charge = { tokens: settled.tokens ? amounts.tokens : 0, usd_micros: settled.usdMicros ? amounts.usdMicros : 0, basis: 'expired' };
      const keyId = scopes.find((s) => s.startsWith('key:'))?.slice('key:'.length) ?? null;
      const tenantId = scopes.find((s) => s.startsWith('tenant:'))?.slice('tenant:'.length) ?? null;
      this.audit.record({ kind: 'proxy.background_expired', keyId, tenantId, payload: { response_id: heldBackgroundResponse(id), scopes, charged: charge } });
    }
    if (charged > 0) this.logger.warn(`charged ${charged} background response(s) their reservation: nobody read them back within ${Math.round((Date.now() - cutoff) / 1000)} s`);
    return charged;
  }

  /** Admin: release (or, dry run, list) reservations older than `olderThanMs` on both ledgers. */
  async reap(olderThanMs: number | undefined, dryRun: boolean, actor: AdminActor): Promise<{ olderThanMs: number; tokens: LedgerReap; usdMicros: LedgerReap }> {
    const age = olderThanMs ?? this.ttlMs;
    const cutoff = Date.now() - age;
    if (dryRun) {
      const [tokens, usdMicros] = await Promise.all([this.budgets.listReservations(cutoff), this.costs.listReservations(cutoff)]);
      const view = (items: Reservation[]) => ({ count: items.length, items: items.slice(0, DRY_RUN_ITEMS_MAX) });
      return { olderThanMs: age, tokens: view(tokens), usdMicros: view(usdMicros) };
    }
    const released = await this.release(cutoff);
    await this.audit.recordNow({
      kind: 'admin.reservations.reap',
      payload: {
        actor,
        older_than_secs: Math.round(age / 1000),
        released: { tokens: released.tokens, usd_micros: released.usdMicros },
        background_charged: released.background,
      },
    });
    return { olderThanMs: age, tokens: { count: released.tokens, items: [] }, usdMicros: { count: released.usdMicros, items: [] } };
  }
}
