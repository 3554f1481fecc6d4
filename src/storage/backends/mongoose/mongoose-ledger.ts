import { mongo } from 'mongoose';
import { Ledger, LedgerScope, Reservation, ReserveResult, rolledOver, windowStartFor } from '../../../budgets/domain/ledger';
import { Page, decodeCursor, encodeCursor } from '../../../common/page';
import {
  int64,
  prefixRegex,
  reservationFromDoc,
  reservationKey,
  reservationToDoc,
  scopeFromDoc,
  scopeToDoc,
} from './mongoose.mappers';
import { LedgerScopeDoc, MongooseModels, ReservationDoc, driverCollection, isDuplicateKey, retryOnDuplicate } from './mongoose.schemas';

type Document = mongo.Document;

export type LedgerKind = 'tokens' | 'usd_micros';

const isString = (v: unknown): v is string => typeof v === 'string';

/** A constant inside an aggregation expression, never mistaken for a field path or an operator. */
const lit = (value: unknown): Document => ({ $literal: value });

/**
 * The window arithmetic of `rolledOver()` as aggregation expressions over a scope document, so the
 * rollover happens inside the same single-document atomic update as the check or the settle.
 */
function windowAt(now: number): { ended: Document; spent: Document; windowStart: Document } {
  const t = lit(int64(now));
  // `$gt: [null, 0]` is false, so scopes without a period never roll over.
  const ended = { $and: [{ $gt: ['$period_ms', 0] }, { $gte: [t, { $add: ['$window_start', '$period_ms'] }] }] };
  return {
    ended,
    spent: { $cond: [ended, lit(0n), '$spent'] },
    windowStart: { $cond: [ended, { $subtract: [t, { $mod: [t, '$period_ms'] }] }, '$window_start'] },
  };
}

/**
 * A ledger in MongoDB without multi-document transactions (a standalone server has none).
 *
 * Each per-scope check-and-add is one guarded single-document update (`$expr` filter + update
 * pipeline), which MongoDB applies atomically: concurrent reserves from any number of connections can
 * never push `spent + reserved` past a limit. All-or-none across scopes is done by compensation: the
 * scopes already taken are given back when a later one refuses. Exactly-once settling rests on
 * `findOneAndDelete` of the reservation document: only the caller that deleted it touches the scopes.
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
    const window = windowAt(now);
    const windowStart =
      periodMs === null
        ? lit(0n)
        : { $cond: [{ $eq: ['$period_ms', lit(int64(periodMs))] }, window.windowStart, lit(int64(windowStartFor(periodMs, now)))] };
    // One upserting pipeline: the limit changes atomically with respect to concurrent reserves, and a
    // new row starts from the $ifNull defaults.
    const update = [
      { $set: { spent: { $ifNull: ['$spent', lit(0n)] }, reserved: { $ifNull: ['$reserved', lit(0n)] }, window_start: { $ifNull: ['$window_start', lit(0n)] } } },
      {
        $set: {
          limit: lit(limit === null ? null : int64(limit)),
          spent: window.spent,
          window_start: windowStart,
          period_ms: lit(periodMs === null ? null : int64(periodMs)),
          updated_at: lit(int64(now)),
        },
      },
    ];
    const doc = await retryOnDuplicate(() =>
      this.scopes.findOneAndUpdate({ kind: this.kind, scope }, update, { upsert: true, returnDocument: 'after' }),
    );
    if (!doc) throw new Error(`upsert of ledger scope '${scope}' returned no document`);
    return scopeFromDoc(doc);
  }

  async resetSpent(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    const window = windowAt(now);
    const doc = await this.scopes.findOneAndUpdate(
      { kind: this.kind, scope },
      [{ $set: { spent: lit(0n), window_start: window.windowStart, updated_at: lit(int64(now)) } }],
      { returnDocument: 'after' },
    );
    return doc ? scopeFromDoc(doc) : null;
  }

  async get(scope: string, now = Date.now()): Promise<LedgerScope | null> {
    const doc = await this.models.scopes.findOne({ kind: this.kind, scope }).lean<LedgerScopeDoc>();
    return doc ? rolledOver(scopeFromDoc(doc), now) : null;
  }

  async list(prefix: string | null, limit: number, cursor: string | null, now = Date.now()): Promise<Page<LedgerScope>> {
    const after = cursor === null ? null : decodeCursor(cursor, isString);
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
    if (await this.takeExisting(scope, amount, now)) return true;
    try {
      await this.scopes.insertOne(
        scopeToDoc(this.kind, { scope, limit: null, spent: 0, reserved: amount, periodMs: null, windowStart: 0, updatedAt: now }),
      );
      return true;
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
    }
    // The row exists (perhaps created a moment ago by a concurrent reserve): the guard decides.
    return this.takeExisting(scope, amount, now);
  }

  private async takeExisting(scope: string, amount: number, now: number): Promise<boolean> {
    const window = windowAt(now);
    const n = lit(int64(amount));
    const fits = {
      $or: [{ $not: [{ $isNumber: '$limit' }] }, { $lte: [{ $add: [window.spent, '$reserved', n] }, '$limit'] }],
    };
    const result = await this.scopes.updateOne({ kind: this.kind, scope, $expr: fits }, [
      { $set: { spent: window.spent, window_start: window.windowStart, reserved: { $add: ['$reserved', n] }, updated_at: lit(int64(now)) } },
    ]);
    return result.matchedCount === 1;
  }

  private async settle(id: string, actual: number, now: number): Promise<boolean> {
    const doc = await this.reservations.findOneAndDelete({ _id: reservationKey(this.kind, id) });
    if (!doc) return false;
    const reservation = reservationFromDoc(doc);
    await this.adjust(reservation.scopes, -reservation.amount, actual, now);
    return true;
  }

  /**
   * Per scope, in one round trip: reserved += `reservedDelta` (never below 0) and spent += `spentDelta`,
   * after the window rollover. Scope rows are never deleted, so every scope a reservation counted in
   * is still there.
   */
  private async adjust(scopes: string[], reservedDelta: number, spentDelta: number, now: number): Promise<void> {
    if (scopes.length === 0) return;
    const window = windowAt(now);
    const update = [
      {
        $set: {
          spent: { $add: [window.spent, lit(int64(spentDelta))] },
          window_start: window.windowStart,
          reserved: { $max: [lit(0n), { $add: ['$reserved', lit(int64(reservedDelta))] }] },
          updated_at: lit(int64(now)),
        },
      },
    ];
    const operations: mongo.AnyBulkWriteOperation<LedgerScopeDoc>[] = scopes.map((scope) => ({
      updateOne: { filter: { kind: this.kind, scope }, update },
    }));
    await this.scopes.bulkWrite(operations, { ordered: false });
  }
}
