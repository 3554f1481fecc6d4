import { isDeepStrictEqual } from 'node:util';
import { Ledger } from '../ports/ledger';
import { ScopeRateLimit, ScopeRateLimitRepository } from '../ports/scope-rate-limit.repository';
import { StorageBackend } from '../ports/storage-backend';

export type Table =
  | 'virtual_keys'
  | 'budget_scopes'
  | 'budget_reservations'
  | 'cost_scopes'
  | 'cost_reservations'
  | 'rate_limits'
  | 'audit_log';

export interface TableReport {
  table: Table;
  source: number;
  copied: number;
  target: number;
}

export type Progress = (table: Table, done: number, total: number) => void;

const PAGE = 500;

/**
 * Copies keys, ledgers (scopes and outstanding reservations), scope rate limits and the audit log from
 * one backend to another. Idempotent: a key or rate limit already in the target is rewritten only when it
 * differs, ledger rows are written verbatim, audit rows already present (same id) are skipped, so a
 * second run changes nothing.
 * A state-file target keeps only keys: the other tables are not copied and not compared.
 */
export async function migrateStorage(from: StorageBackend, to: StorageBackend, progress: Progress = () => undefined): Promise<TableReport[]> {
  const reports: TableReport[] = [await copyKeys(from, to, progress)];
  if (to.name === 'state') return reports;
  reports.push(...(await copyLedger('budget', from.budgets, to.budgets, progress)));
  reports.push(...(await copyLedger('cost', from.costs, to.costs, progress)));
  reports.push(await copyRateLimits(from.rateLimits, to.rateLimits, progress));
  reports.push(await copyAudit(from, to, progress));
  return reports;
}

async function copyKeys(from: StorageBackend, to: StorageBackend, progress: Progress): Promise<TableReport> {
  const keys = await from.keys.listAll();
  let copied = 0;
  for (const key of keys) {
    const existing = await to.keys.get(key.id);
    if (existing === null) await to.keys.create(key);
    else if (!isDeepStrictEqual(existing, key)) await to.keys.update(key);
    else continue;
    copied++;
    progress('virtual_keys', copied, keys.length);
  }
  progress('virtual_keys', keys.length, keys.length);
  return { table: 'virtual_keys', source: keys.length, copied, target: await to.keys.count() };
}

async function copyLedger(kind: 'budget' | 'cost', from: Ledger, to: Ledger, progress: Progress): Promise<TableReport[]> {
  const scopes = await allScopes(from);
  const scopeTable: Table = `${kind}_scopes`;
  let copied = 0;
  for (const scope of scopes) {
    const existing = await to.get(scope.scope, 0);
    if (!isDeepStrictEqual(existing, scope)) {
      await to.putScope(scope);
      copied++;
    }
    progress(scopeTable, copied, scopes.length);
  }
  const reservations = await from.listReservations(Number.MAX_SAFE_INTEGER);
  const before = (await to.listReservations(Number.MAX_SAFE_INTEGER)).length;
  for (const reservation of reservations) await to.putReservation(reservation);
  const after = (await to.listReservations(Number.MAX_SAFE_INTEGER)).length;
  const reservationTable: Table = `${kind}_reservations`;
  progress(reservationTable, reservations.length, reservations.length);
  return [
    { table: scopeTable, source: scopes.length, copied, target: (await allScopes(to)).length },
    { table: reservationTable, source: reservations.length, copied: after - before, target: after },
  ];
}

async function allScopes(ledger: Ledger) {
  const out = [];
  let cursor: string | null = null;
  do {
    // Read at the far past so a periodic window that has ended is copied as stored, not rolled over.
    const page = await ledger.list(null, PAGE, cursor, 0);
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

async function copyRateLimits(from: ScopeRateLimitRepository, to: ScopeRateLimitRepository, progress: Progress): Promise<TableReport> {
  const limits = await allRateLimits(from);
  let copied = 0;
  for (const [i, limit] of limits.entries()) {
    if (!isDeepStrictEqual(await to.get(limit.scope), limit)) {
      await to.put(limit);
      copied++;
    }
    progress('rate_limits', i + 1, limits.length);
  }
  if (limits.length === 0) progress('rate_limits', 0, 0);
  return { table: 'rate_limits', source: limits.length, copied, target: (await allRateLimits(to)).length };
}

async function allRateLimits(repository: ScopeRateLimitRepository): Promise<ScopeRateLimit[]> {
  const out: ScopeRateLimit[] = [];
  let cursor: string | null = null;
  do {
    const page = await repository.list(PAGE, cursor);
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

async function copyAudit(from: StorageBackend, to: StorageBackend, progress: Progress): Promise<TableReport> {
  const total = await from.audit.count();
  const before = await to.audit.count();
  let done = 0;
  for await (const batch of from.audit.scan({}, PAGE)) {
    await to.audit.append(batch);
    done += batch.length;
    progress('audit_log', done, total);
  }
  const target = await to.audit.count();
  return { table: 'audit_log', source: total, copied: target - before, target };
}
