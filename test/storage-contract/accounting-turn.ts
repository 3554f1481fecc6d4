import { AccountingLedger } from '../../src/storage/ports/accounting-ledger';
import { StorageBackend } from '../../src/storage/ports/storage-backend';

/**
 * One event-loop turn of mixed accounting calls, for the stores that batch them (Redis, PostgreSQL):
 * whatever batches carry them, they must be answered as if applied one after the other in submission
 * order.
 */
const SCOPES = ['key:turn', 'tenant:turn'];
const AMOUNTS = { tokens: 100, usdMicros: 1000 };

/** Limits of 1,000 tokens on `key:turn` and 1,000,000 µUSD on `tenant:turn`, and 300 tokens held as `held`. */
export async function prepareTurn(backend: StorageBackend, ledger: AccountingLedger, now: number): Promise<void> {
  await backend.budgets.setLimit('key:turn', 1000, null, now);
  await backend.costs.setLimit('tenant:turn', 1_000_000, null, now);
  expect(await ledger.reserve('held', SCOPES, { tokens: 300, usdMicros: 3000 }, now)).toEqual({ ok: true });
}

/** Submits the turn's 17 calls at once, in order; resolves with their answers (TURN_ANSWERS). */
export function submitTurn(ledger: AccountingLedger, now: number): Promise<unknown[]> {
  return Promise.all([
    // Refused by the cost ledger: charges nothing on the token ledger either.
    ledger.reserve('big', SCOPES, { tokens: 100, usdMicros: 2_000_000 }, now),
    // 700 tokens left: t0..t6 fit, t7..t9 are refused by what t0..t6 took in this same batch.
    ...Array.from({ length: 10 }, (_, i) => ledger.reserve(`t${i}`, SCOPES, AMOUNTS, now)),
    ledger.settle('held', null, now),
    // The 300 released just before: t10..t12 fit, t13 does not.
    ...Array.from({ length: 4 }, (_, i) => ledger.reserve(`t${10 + i}`, SCOPES, AMOUNTS, now)),
    ledger.settle('t0', { tokens: 42, usdMicros: 420 }, now),
    ledger.settle('never-reserved', { tokens: 1, usdMicros: 1 }, now),
  ]);
}

/** Reserves `t1` once more (still outstanding after the turn: answered ok, charged once). */
export function reserveAgain(ledger: AccountingLedger, now: number): Promise<unknown> {
  return ledger.reserve('t1', SCOPES, AMOUNTS, now);
}

const FULL = { ok: false, ledger: 'tokens', scope: 'key:turn', limit: 1000, spent: 0, reserved: 1000 };

export const TURN_ANSWERS: unknown[] = [
  { ok: false, ledger: 'usd_micros', scope: 'tenant:turn', limit: 1_000_000, spent: 0, reserved: 3000 },
  ...Array.from({ length: 7 }, () => ({ ok: true })),
  FULL,
  FULL,
  FULL,
  { tokens: true, usdMicros: true },
  { ok: true },
  { ok: true },
  { ok: true },
  FULL,
  { tokens: true, usdMicros: true },
  { tokens: false, usdMicros: false },
];

/** The reservations the turn leaves outstanding, sorted. */
export const TURN_OUTSTANDING = ['t1', 't10', 't11', 't12', 't2', 't3', 't4', 't5', 't6'];

/** Charged: exactly the ten admitted (t0 of them committed), nothing of the refused or released. */
export async function expectTurnCharged(backend: StorageBackend, now: number): Promise<void> {
  expect(await backend.budgets.get('key:turn', now)).toMatchObject({ spent: 42, reserved: 900 });
  expect(await backend.costs.get('tenant:turn', now)).toMatchObject({ spent: 420, reserved: 9000 });
  expect((await backend.costs.listReservations(now + 1)).map((r) => r.id).sort()).toEqual(TURN_OUTSTANDING);
}
