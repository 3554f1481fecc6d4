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
 * both ledgers or none. A store that can do both in one operation implements it (SQLite: one
 * transaction); the others use ParallelAccountingLedger.
 */
export abstract class AccountingLedger {
  abstract reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now?: number): Promise<AccountingReserveResult>;
  /** Commits `actual` on both ledgers, or releases both when `actual` is null. */
  abstract settle(reservationId: string, actual: LedgerAmounts | null, now?: number): Promise<AccountingSettled>;
}

/**
 * Both ledgers called in parallel (one round trip of latency: redis pipelines the two scripts on its
 * connection, postgres uses two pooled connections); when one refuses, the other's reservation is
 * released again (the compensation docs/budgets.md describes).
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
