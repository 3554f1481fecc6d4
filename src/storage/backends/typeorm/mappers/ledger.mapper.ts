import { LedgerScope, Reservation } from '../../../ports/ledger';
import { LedgerReservationEntity } from '../entities/ledger-reservation.entity';
import { LedgerScopeEntity } from '../entities/ledger-scope.entity';

export function toLedgerScope(row: LedgerScopeEntity): LedgerScope {
  return {
    scope: row.scope,
    limit: row.limitValue,
    spent: row.spent,
    reserved: row.reserved,
    periodMs: row.periodMs,
    windowStart: row.windowStart,
    updatedAt: row.updatedAt,
  };
}

export function toReservation(row: LedgerReservationEntity): Reservation {
  return { id: row.id, scopes: row.scopes, amount: row.amount, createdAt: row.createdAt };
}

/** Column values of a reservation row, in the order (kind, id, scopes, amount, created_at). */
export function reservationValues(kind: string, reservation: Reservation): unknown[] {
  return [kind, reservation.id, JSON.stringify(reservation.scopes), reservation.amount, reservation.createdAt];
}

/** A reservation row as returned by `DELETE … RETURNING scopes, amount` (pg returns bigint as text). */
export interface SettledRow {
  scopes: string;
  amount: string | number;
}

export function settledAmount(row: SettledRow): { scopes: string[]; amount: number } {
  return { scopes: JSON.parse(row.scopes) as string[], amount: Number(row.amount) };
}
