import { Page } from '../../common/page';

/**
 * The shared shape of the token ledger (BudgetLedger, units = tokens) and the cost ledger
 * (CostLedger, units = USD micros). All amounts are non-negative integers; time is epoch ms.
 *
 * Accounting model (docs/budgets.md): a request first *reserves* its estimate on every scope it is charged
 * to, all or none, then *commits* its real usage (reserved -= estimate, spent += actual) or *releases*
 * the reservation. A scope without a limit never refuses but is still metered.
 */
export interface LedgerScope {
  scope: string;
  /** null = unlimited (metered only). */
  limit: number | null;
  spent: number;
  reserved: number;
  /** Length of a periodic budget window (`reset_every`), or null for a lifetime budget. */
  periodMs: number | null;
  /** Start of the current window (epoch ms, aligned to a multiple of periodMs); 0 without a period. */
  windowStart: number;
  updatedAt: number;
}

export interface Reservation {
  id: string;
  scopes: string[];
  amount: number;
  createdAt: number;
}

export type ReserveResult =
  | { ok: true }
  | { ok: false; scope: string; limit: number; spent: number; reserved: number };

export abstract class Ledger {
  /**
   * Atomically reserves `amount` on every scope (creating unknown scopes with no limit), or on none:
   * refused when, for some scope with a limit, `spent + reserved + amount > limit` (after the window
   * rollover below). The first refusing scope, in the order given, is reported.
   * Idempotent per reservation id: reserving an id that is still outstanding changes nothing and
   * answers ok. `amount` may be 0 (metering only).
   */
  abstract reserve(reservationId: string, scopes: string[], amount: number, now?: number): Promise<ReserveResult>;
  /** Settles an outstanding reservation with the real usage: per scope `reserved -= amount`,
   * `spent += actual`. Returns false (and changes nothing) when the id is unknown or already settled. */
  abstract commit(reservationId: string, actual: number, now?: number): Promise<boolean>;
  /** Drops an outstanding reservation (`reserved -= amount`); false when unknown or already settled. */
  abstract release(reservationId: string, now?: number): Promise<boolean>;
  /** Outstanding reservations created strictly before `createdBefore`, oldest first. */
  abstract listReservations(createdBefore: number): Promise<Reservation[]>;
  /** Releases every outstanding reservation created strictly before `createdBefore`; returns how many. */
  abstract reap(createdBefore: number): Promise<number>;
  /** Creates or updates a scope's limit and period, keeping spent and reserved. Changing the period
   * starts a new window aligned to `now`. */
  abstract setLimit(scope: string, limit: number | null, periodMs: number | null, now?: number): Promise<LedgerScope>;
  /** Sets spent to 0 (outstanding reservations stay). Returns null for an unknown scope. */
  abstract resetSpent(scope: string, now?: number): Promise<LedgerScope | null>;
  /** The scope as of `now` (a window that has ended reads as spent 0), or null when unknown. */
  abstract get(scope: string, now?: number): Promise<LedgerScope | null>;
  /** Scopes ordered by name ascending, optionally only those starting with `prefix`, as of `now`. */
  abstract list(prefix: string | null, limit: number, cursor: string | null, now?: number): Promise<Page<LedgerScope>>;
  /** Migration: writes the scope exactly as given (insert or overwrite). */
  abstract putScope(scope: LedgerScope): Promise<void>;
  /** Migration: inserts an outstanding reservation as given, without touching scope totals; no-op if the id exists. */
  abstract putReservation(reservation: Reservation): Promise<void>;
}

/** Start of the window containing `now` for a period (windows are aligned to the epoch, in UTC). */
export function windowStartFor(periodMs: number, now: number): number {
  return now - (now % periodMs);
}

/**
 * Periodic budgets roll over lazily: whoever touches a scope after its window ended sees spent 0 and
 * the new window start. No job has to run on time for this to be right (issue: periodic budgets).
 */
export function rolledOver(scope: LedgerScope, now: number): LedgerScope {
  if (scope.periodMs === null || now < scope.windowStart + scope.periodMs) return scope;
  return { ...scope, spent: 0, windowStart: windowStartFor(scope.periodMs, now) };
}
