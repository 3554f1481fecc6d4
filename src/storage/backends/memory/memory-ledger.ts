import { Page, encodeCursor } from '../../../common/page';
import { Ledger, LedgerScope, Reservation, ReserveResult, rolledOver, windowStartFor } from '../../ports/ledger';
import { readCursor } from '../../../common/errors/storage-errors';
import { AccountingLedger, AccountingReserveResult, AccountingSettled, LedgerAmounts, refusedBy } from '../../ports/accounting-ledger';

const isString = (v: unknown): v is string => typeof v === 'string';
const OK: ReserveResult = { ok: true };

/**
 * In-process ledger. Every method body runs synchronously up to its first await (there is none), so
 * each check-and-update is atomic within the process, which is all this backend promises.
 */
export class MemoryLedger extends Ledger {
  private readonly scopes = new Map<string, LedgerScope>();
  private readonly reservations = new Map<string, Reservation>();

  async reserve(reservationId: string, scopes: string[], amount: number, now = Date.now()): Promise<ReserveResult> {
    const refused = this.refusal(reservationId, scopes, amount, now);
    if (refused) return refused;
    this.hold(reservationId, scopes, amount, now);
    return OK;
  }

  /** Why `reserve` would refuse, or null when it would hold (or holds already) the reservation. */
  refusal(reservationId: string, scopes: string[], amount: number, now: number): ReserveResult | null {
    if (this.reservations.has(reservationId)) return null;
    for (const scope of scopes) {
      const row = this.current(scope, now);
      if (row.limit !== null && row.spent + row.reserved + amount > row.limit) {
        return { ok: false, scope: row.scope, limit: row.limit, spent: row.spent, reserved: row.reserved };
      }
    }
    return null;
  }

  /** Holds the reservation `refusal` found room for (nothing when it is held already). */
  hold(reservationId: string, scopes: string[], amount: number, now: number): void {
    if (this.reservations.has(reservationId)) return;
    for (const scope of scopes) {
      const row = this.current(scope, now);
      this.scopes.set(scope, { ...row, reserved: row.reserved + amount, updatedAt: now });
    }
    this.reservations.set(reservationId, { id: reservationId, scopes: [...scopes], amount, createdAt: now });
  }

  async commit(reservationId: string, actual: number, now = Date.now()): Promise<boolean> {
    return this.settle(reservationId, actual, now);
  }

  async release(reservationId: string, now = Date.now()): Promise<boolean> {
    return this.settle(reservationId, 0, now);
  }

  async listReservations(createdBefore: number): Promise<Reservation[]> {
    return [...this.reservations.values()]
      .filter((r) => r.createdAt < createdBefore)
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((r) => ({ ...r, scopes: [...r.scopes] }));
  }

  async reap(createdBefore: number): Promise<number> {
    let count = 0;
    for (const r of await this.listReservations(createdBefore)) {
      if (this.settle(r.id, 0, Date.now())) count++;
    }
    return count;
  }

  async setLimit(scope: string, limit: number | null, periodMs: number | null, now = Date.now()): Promise<LedgerScope> {
    const row = this.current(scope, now);
    const windowStart = periodMs === row.periodMs ? row.windowStart : periodMs === null ? 0 : windowStartFor(periodMs, now);
    const next = { ...row, limit, periodMs, windowStart, updatedAt: now };
    this.scopes.set(scope, next);
    return { ...next };
  }

  async resetSpent(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    if (!this.scopes.has(scope)) return null;
    const next = { ...this.current(scope, now), spent: 0, updatedAt: now };
    this.scopes.set(scope, next);
    return { ...next };
  }

  async get(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    const row = this.scopes.get(scope);
    return row ? rolledOver(row, now) : null;
  }

  async list(prefix: string | null, limit: number, cursor: string | null, now = Date.now()): Promise<Page<LedgerScope>> {
    const after = readCursor(cursor, isString);
    const matching = [...this.scopes.values()]
      .filter((s) => (prefix === null || s.scope.startsWith(prefix)) && (after === null || s.scope > after))
      .sort((a, b) => (a.scope < b.scope ? -1 : 1));
    const items = matching.slice(0, limit).map((s) => rolledOver(s, now));
    return { items, nextCursor: matching.length > limit ? encodeCursor(items[items.length - 1].scope) : null };
  }

  async putScope(scope: LedgerScope): Promise<void> {
    this.scopes.set(scope.scope, { ...scope });
  }

  async putReservation(reservation: Reservation): Promise<void> {
    if (!this.reservations.has(reservation.id)) this.reservations.set(reservation.id, { ...reservation, scopes: [...reservation.scopes] });
  }

  /** Commits `actual` (release: 0) on every scope of the reservation; false when it is not held. */
  settle(reservationId: string, actual: number, now: number): boolean {
    const reservation = this.reservations.get(reservationId);
    if (!reservation) return false;
    this.reservations.delete(reservationId);
    for (const scope of reservation.scopes) {
      const row = this.current(scope, now);
      this.scopes.set(scope, {
        ...row,
        reserved: Math.max(0, row.reserved - reservation.amount),
        spent: row.spent + actual,
        updatedAt: now,
      });
    }
    return true;
  }

  /** The scope as of `now`, created unlimited when unknown (not stored until the caller sets it). */
  private current(scope: string, now: number): LedgerScope {
    const row = this.scopes.get(scope);
    if (!row) return { scope, limit: null, spent: 0, reserved: 0, periodMs: null, windowStart: 0, updatedAt: now };
    return rolledOver(row, now);
  }
}

/**
 * The memory store's token and cost ledgers reserved and settled together in one synchronous step: all
 * scopes of both or none, with nothing to compensate (ParallelAccountingLedger's two calls and their
 * promises are for stores that answer over a connection).
 */
export class MemoryAccountingLedger extends AccountingLedger {
  constructor(
    private readonly tokens: MemoryLedger,
    private readonly costs: MemoryLedger,
  ) {
    super();
  }

  async reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now = Date.now()): Promise<AccountingReserveResult> {
    const byTokens = this.tokens.refusal(reservationId, scopes, amounts.tokens, now);
    const byCost = this.costs.refusal(reservationId, scopes, amounts.usdMicros, now);
    if (byTokens || byCost) return refusedBy(byTokens ?? OK, byCost ?? OK);
    this.tokens.hold(reservationId, scopes, amounts.tokens, now);
    this.costs.hold(reservationId, scopes, amounts.usdMicros, now);
    return { ok: true };
  }

  async settle(reservationId: string, actual: LedgerAmounts | null, now = Date.now()): Promise<AccountingSettled> {
    return {
      tokens: this.tokens.settle(reservationId, actual?.tokens ?? 0, now),
      usdMicros: this.costs.settle(reservationId, actual?.usdMicros ?? 0, now),
    };
  }
}
