import { Ledger, ReserveResult } from './ledger';

/** One request's amounts on the two ledgers. */
export interface LedgerAmounts {
  tokens: number;
  usdMicros: number;
}

export type AccountingReserveResult =
  | { ok: true }
  | { ok: false; ledger: 'tokens' | 'usd_micros'; scope: string; limit: number; spent: number; reserved: number };

/** Per ledger: the reservation was found and settled (false: unknown, or settled/reaped before). */
export interface AccountingSettled {
  tokens: boolean;
  usdMicros: boolean;
}

/**
 * The token and cost ledgers of one store, reserved and settled together (docs/budgets.md): all scopes of
 * both ledgers or none. A store that can do both in one operation implements it (SQLite and PostgreSQL:
 * one transaction; Redis: one script; memory: one synchronous step); MongoDB uses ParallelAccountingLedger.
 */
export abstract class AccountingLedger {
  abstract reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now?: number): Promise<AccountingReserveResult>;
  /** Commits `actual` on both ledgers, or releases both when `actual` is null. */
  abstract settle(reservationId: string, actual: LedgerAmounts | null, now?: number): Promise<AccountingSettled>;
}

/**
 * Both ledgers called in parallel (one round trip of latency); when one refuses, the other's reservation
 * is released again (the compensation docs/budgets.md describes).
 */
export class ParallelAccountingLedger extends AccountingLedger {
  constructor(
    private readonly tokens: Ledger,
    private readonly costs: Ledger,
  ) {
    super();
  }

  async reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now = Date.now()): Promise<AccountingReserveResult> {
    const [byTokens, byCost] = await Promise.all([
      this.tokens.reserve(reservationId, scopes, amounts.tokens, now),
      this.costs.reserve(reservationId, scopes, amounts.usdMicros, now),
    ]);
    if (byTokens.ok && byCost.ok) return { ok: true };
    await Promise.all([byTokens.ok && this.tokens.release(reservationId, now), byCost.ok && this.costs.release(reservationId, now)]);
    return refusedBy(byTokens, byCost);
  }

  async settle(reservationId: string, actual: LedgerAmounts | null, now = Date.now()): Promise<AccountingSettled> {
    const [tokens, usdMicros] = await Promise.all(
      actual === null
        ? [this.tokens.release(reservationId, now), this.costs.release(reservationId, now)]
        : [this.tokens.commit(reservationId, actual.tokens, now), this.costs.commit(reservationId, actual.usdMicros, now)],
    );
    return { tokens, usdMicros };
  }
}

/** The refusal to report when at least one ledger refused: the token ledger's first. */
export function refusedBy(byTokens: ReserveResult, byCost: ReserveResult): AccountingReserveResult {
  if (!byTokens.ok) return { ...byTokens, ledger: 'tokens' };
  if (!byCost.ok) return { ...byCost, ledger: 'usd_micros' };
  return { ok: true };
}

/** A batched store's reply to one operation (lua/accounting-batch.lua, PostgreSQL's ditto_accounting_batch). */
export type BatchReply = ArrayLike<number | string>;

/** Reserve: `[1]`, or `[0, ledger (1 tokens, 2 USD micros), position of the refusing scope in `scopes`
 * (1-based), limit, spent, reserved]`. */
export function reserveReply(reply: BatchReply, scopes: string[]): AccountingReserveResult {
  if (Number(reply[0]) === 1) return { ok: true };
  return {
    ok: false,
    ledger: Number(reply[1]) === 1 ? 'tokens' : 'usd_micros',
    scope: scopes[Number(reply[2]) - 1],
    limit: Number(reply[3]),
    spent: Number(reply[4]),
    reserved: Number(reply[5]),
  };
}

/** Settle: `[tokens settled, USD settled]`, 1 or 0 each. */
export function settleReply(reply: BatchReply): AccountingSettled {
  return { tokens: Number(reply[0]) === 1, usdMicros: Number(reply[1]) === 1 };
}
