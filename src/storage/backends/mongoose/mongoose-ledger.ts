import { mongo } from 'mongoose';
import { Ledger, LedgerScope, Reservation, ReserveResult, rolledOver, windowStartFor } from '../../ports/ledger';
import { Page, encodeCursor } from '../../../common/page';
import {
  int64,
  num,
  prefixRegex,
  reservationFromDoc,
  reservationKey,
  reservationToDoc,
  scopeDerived,
  scopeFromDoc,
  scopeToDoc,
} from './mongoose.mappers';
import { LedgerScopeDoc, MongooseModels, ReservationDoc, driverCollection, isDuplicateKey, retryOnDuplicate } from './mongoose.schemas';
import { readCursor } from '../../../common/errors/storage-errors';

export type LedgerKind = 'tokens' | 'usd_micros';

const isString = (v: unknown): v is string => typeof v === 'string';

/** How often one call re-reads a scope that changed under it before giving up (never reached in tests). */
const MAX_ATTEMPTS = 100;

type ScopeRow = mongo.WithId<LedgerScopeDoc>;

/** Matches the row only while `fields` still hold the values read in `doc`: a compare-and-set. */
function unchanged(doc: ScopeRow, fields: Array<'limit' | 'spent' | 'reserved' | 'period_ms' | 'window_start'>): mongo.Filter<LedgerScopeDoc> {
  const filter: mongo.Document = { _id: doc._id };
  for (const field of fields) {
    const value = doc[field];
    filter[field] = value === null || value === undefined ? null : int64(num(value));
  }
  return filter as mongo.Filter<LedgerScopeDoc>;
}

/**
 * A ledger in MongoDB without multi-document transactions (a standalone server has none), using only
 * single-document updates with classic operators (`$inc`, `$set`): no update pipelines and no `$expr`,
 * which not every server behind the MongoDB protocol implements (FerretDB 1.x has neither).
 *
 * Each scope row carries two derived fields, kept in step by every write: `window_end` and `headroom`
 * = (limit ?? 0) - spent - reserved. A reserve on one scope is then one guarded update,
 * `{window_end > now, limit null or headroom >= n}` → `$inc {reserved: n, headroom: -n}`, which the
 * server applies atomically per document: concurrent reserves from any number of connections can never
 * push `spent + reserved` past a limit. What that update cannot do (roll an ended window over, complete
 * a row written before the derived fields, change a limit) is a read followed by a compare-and-set on
 * the fields it read, retried when another writer got there first. All-or-none across scopes is done by
 * compensation: the scopes already taken are given back when a later one refuses. Exactly-once
 * settling rests on `findOneAndDelete` of the reservation document: only the caller that deleted it
 * touches the scopes.
 */
export class MongooseLedger extends Ledger {
  private readonly scopes: mongo.Collection<LedgerScopeDoc>;
  private readonly reservations: mongo.Collection<ReservationDoc>;

  constructor(
    private readonly models: MongooseModels,
    private readonly kind: LedgerKind,
  ) {
    super();
    this.scopes = driverCollection(models.scopes);
    this.reservations = driverCollection(models.reservations);
  }

  async reserve(reservationId: string, scopes: string[], amount: number, now = Date.now()): Promise<ReserveResult> {
    const unique = [...new Set(scopes)];
    const doc = reservationToDoc(this.kind, { id: reservationId, scopes: unique, amount, createdAt: now });
    try {
      // The reservation is written first: its primary key is what makes reserve idempotent per id.
      await this.reservations.insertOne(doc);
    } catch (error) {
      if (isDuplicateKey(error)) return { ok: true };
      throw error;
    }
    const taken: string[] = [];
    try {
      for (const scope of unique) {
        if (!(await this.take(scope, amount, now))) {
          await this.abandon(doc._id, taken, amount, now);
          const row = await this.get(scope, now);
          return { ok: false, scope, limit: row?.limit ?? 0, spent: row?.spent ?? 0, reserved: row?.reserved ?? 0 };
        }
        taken.push(scope);
      }
    } catch (error) {
      // Best effort: a half-made reservation left behind would later be released from every scope.
      await this.abandon(doc._id, taken, amount, now).catch(() => undefined);
      throw error;
    }
    return { ok: true };
  }

  async commit(reservationId: string, actual: number, now = Date.now()): Promise<boolean> {
    return this.settle(reservationId, actual, now);
  }

  async release(reservationId: string, now = Date.now()): Promise<boolean> {
    return this.settle(reservationId, 0, now);
  }

  async listReservations(createdBefore: number): Promise<Reservation[]> {
    const docs = await this.models.reservations
      .find({ kind: this.kind, created_at: { $lt: createdBefore } })
      .sort({ created_at: 1, _id: 1 })
      .lean<ReservationDoc[]>();
    return docs.map(reservationFromDoc);
  }

  async reap(createdBefore: number): Promise<number> {
    let count = 0;
    for (const reservation of await this.listReservations(createdBefore)) {
      if (await this.settle(reservation.id, 0, Date.now())) count++;
    }
    return count;
  }

  async setLimit(scope: string, limit: number | null, periodMs: number | null, now = Date.now()): Promise<LedgerScope> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const doc = await this.current(scope, now);
      if (doc === null) {
        const fresh: LedgerScope = {
          scope,
          limit,
          spent: 0,
          reserved: 0,
          periodMs,
          windowStart: periodMs === null ? 0 : windowStartFor(periodMs, now),
          updatedAt: now,
        };
        try {
          await this.scopes.insertOne(scopeToDoc(this.kind, fresh));
          return fresh;
        } catch (error) {
          // Created a moment ago by a concurrent call: update that row instead.
          if (!isDuplicateKey(error)) throw error;
          continue;
        }
      }
      const row = scopeFromDoc(doc);
      // The same period keeps the current window; another one starts a window aligned to `now`.
      const windowStart = periodMs === null ? 0 : row.periodMs === periodMs ? row.windowStart : windowStartFor(periodMs, now);
      const { window_end } = scopeDerived({ ...row, periodMs, windowStart });
      // spent stays; reserved may move under concurrent reserves, which $inc on headroom commutes with.
      const updated = await this.scopes.findOneAndUpdate(
        unchanged(doc, ['limit', 'period_ms', 'window_start']),
        {
          $set: {
            limit: limit === null ? null : int64(limit),
            period_ms: periodMs === null ? null : int64(periodMs),
            window_start: int64(windowStart),
            window_end,
            updated_at: int64(now),
          },
          $inc: { headroom: int64((limit ?? 0) - (row.limit ?? 0)) },
        },
        { returnDocument: 'after' },
      );
      if (updated) return scopeFromDoc(updated);
    }
    throw this.busy(scope);
  }

  async resetSpent(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const doc = await this.current(scope, now);
      if (doc === null) return null;
      const updated = await this.scopes.findOneAndUpdate(
        unchanged(doc, ['spent', 'window_start']),
        { $set: { spent: 0n, updated_at: int64(now) }, $inc: { headroom: int64(num(doc.spent)) } },
        { returnDocument: 'after' },
      );
      if (updated) return scopeFromDoc(updated);
    }
    throw this.busy(scope);
  }

  async get(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    const doc = await this.models.scopes.findOne({ kind: this.kind, scope }).lean<LedgerScopeDoc>();
    return doc ? rolledOver(scopeFromDoc(doc), now) : null;
  }

  async list(prefix: string | null, limit: number, cursor: string | null, now = Date.now()): Promise<Page<LedgerScope>> {
    const after = readCursor(cursor, isString);
    const scopeFilter: Record<string, unknown> = {};
    if (prefix !== null && prefix !== '') scopeFilter.$regex = prefixRegex(prefix);
    if (after !== null) scopeFilter.$gt = after;
    const filter = Object.keys(scopeFilter).length > 0 ? { kind: this.kind, scope: scopeFilter } : { kind: this.kind };
    const docs = await this.models.scopes
      .find(filter)
      .sort({ scope: 1 })
      .limit(limit + 1)
      .lean<LedgerScopeDoc[]>();
    const items = docs.slice(0, limit).map((doc) => rolledOver(scopeFromDoc(doc), now));
    return { items, nextCursor: docs.length > limit ? encodeCursor(items[items.length - 1].scope) : null };
  }

  async putScope(scope: LedgerScope): Promise<void> {
    await retryOnDuplicate(() =>
      this.scopes.replaceOne({ kind: this.kind, scope: scope.scope }, scopeToDoc(this.kind, scope), { upsert: true }),
    );
  }

  async putReservation(reservation: Reservation): Promise<void> {
    try {
      await this.reservations.insertOne(reservationToDoc(this.kind, reservation));
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
    }
  }

  /** Gives back what a refused reserve had taken, then forgets the reservation. */
  private async abandon(key: string, taken: string[], amount: number, now: number): Promise<void> {
    await this.adjust(taken, -amount, 0, now);
    await this.reservations.deleteOne({ _id: key });
  }

  /** Adds `amount` to one scope's reserved if it fits (creating the scope unlimited when unknown). */
  private async take(scope: string, amount: number, now: number): Promise<boolean> {
    const n = int64(amount);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const result = await this.scopes.updateOne(
        { kind: this.kind, scope, window_end: { $gt: int64(now) }, $or: [{ limit: null }, { headroom: { $gte: n } }] },
        { $inc: { reserved: n, headroom: -n }, $set: { updated_at: int64(now) } },
      );
      if (result.matchedCount === 1) return true;
      // Unknown, refused, or not current (window ended, row without the derived fields): look.
      const doc = await this.current(scope, now);
      if (doc === null) {
        try {
          await this.scopes.insertOne(
            scopeToDoc(this.kind, { scope, limit: null, spent: 0, reserved: amount, periodMs: null, windowStart: 0, updatedAt: now }),
          );
          return true;
        } catch (error) {
          // Created a moment ago by a concurrent reserve: the guard decides.
          if (!isDuplicateKey(error)) throw error;
          continue;
        }
      }
      if (doc.limit !== null && doc.limit !== undefined && num(doc.headroom) < amount) return false;
      // It fits now (rolled over just now, or released meanwhile): the guarded update again.
    }
    throw this.busy(scope);
  }

  private async settle(id: string, actual: number, now: number): Promise<boolean> {
    const doc = await this.reservations.findOneAndDelete({ _id: reservationKey(this.kind, id) });
    if (!doc) return false;
    const reservation = reservationFromDoc(doc);
    await this.adjust(reservation.scopes, -reservation.amount, actual, now);
    return true;
  }

  /**
   * Per scope: reserved += `reservedDelta` (never below 0) and spent += `spentDelta`, after the window
   * rollover. Scope rows are never deleted, so every scope a reservation counted in is still there.
   */
  private async adjust(scopes: string[], reservedDelta: number, spentDelta: number, now: number): Promise<void> {
    await Promise.all(scopes.map((scope) => this.adjustOne(scope, reservedDelta, spentDelta, now)));
  }

  private async adjustOne(scope: string, reservedDelta: number, spentDelta: number, now: number): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const result = await this.scopes.updateOne(
        { kind: this.kind, scope, window_end: { $gt: int64(now) }, reserved: { $gte: int64(-reservedDelta) } },
        {
          $inc: { reserved: int64(reservedDelta), spent: int64(spentDelta), headroom: int64(-reservedDelta - spentDelta) },
          $set: { updated_at: int64(now) },
        },
      );
      if (result.matchedCount === 1) return;
      const doc = await this.current(scope, now);
      if (doc === null) return;
      if (num(doc.reserved) >= -reservedDelta) continue;
      // Less reserved than this reservation counted (rows migrated apart from their reservations):
      // reserved stops at 0, as on every backend.
      const row = scopeFromDoc(doc);
      const next = { ...row, reserved: Math.max(0, row.reserved + reservedDelta), spent: row.spent + spentDelta };
      const updated = await this.scopes.updateOne(
        unchanged(doc, ['limit', 'spent', 'reserved', 'window_start']),
        { $set: { reserved: int64(next.reserved), spent: int64(next.spent), headroom: scopeDerived(next).headroom, updated_at: int64(now) } },
      );
      if (updated.matchedCount === 1) return;
    }
    throw this.busy(scope);
  }

  /**
   * The scope's row as of `now`, or null when unknown. A row whose window has ended is rolled over
   * (spent 0, the window containing `now`) and a row without the derived fields gets them, each by a
   * compare-and-set on every field the new values were computed from; a writer that got there first
   * makes it read again.
   */
  private async current(scope: string, now: number): Promise<ScopeRow | null> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const doc = await this.scopes.findOne({ kind: this.kind, scope });
      if (!doc) return null;
      const row = scopeFromDoc(doc);
      const rolled = rolledOver(row, now);
      if (rolled === row && doc.window_end !== undefined && doc.headroom !== undefined) return doc;
      await this.scopes.updateOne(
        unchanged(doc, ['limit', 'spent', 'reserved', 'period_ms', 'window_start']),
        { $set: { spent: int64(rolled.spent), window_start: int64(rolled.windowStart), ...scopeDerived(rolled) } },
      );
    }
    throw this.busy(scope);
  }

  private busy(scope: string): Error {
    return new Error(`ledger scope '${scope}' kept changing under ${MAX_ATTEMPTS} attempts to update it`);
  }
}
