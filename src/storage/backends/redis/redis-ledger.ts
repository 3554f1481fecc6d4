import { Redis } from 'ioredis';
import { BudgetLedger } from '../../ports/budget-ledger';
import { AccountingLedger, AccountingReserveResult, AccountingSettled, BatchReply, LedgerAmounts, reserveReply, settleReply } from '../../ports/accounting-ledger';
import { BatchingRules, OperationBatcher } from '../../operation-batcher';
import { Ledger, LedgerScope, Reservation, ReserveResult, rolledOver } from '../../ports/ledger';
import { encodeCursor, Page } from '../../../common/page';
import { CostLedger } from '../../ports/cost-ledger';
import { LedgerKind, RedisKeys } from './redis-keys';
import { reservationFromHash, SCOPE_FIELDS, scopeFromFields, scopeToFields } from './redis-ledger.mapper';
import { queueScript, runScript } from './redis-scripts';
import { readCursor } from '../../../common/errors/storage-errors';

const REAP_BATCH = 500;

function isScopeCursor(v: unknown): v is { scope: string } {
  return typeof v === 'object' && v !== null && typeof (v as { scope?: unknown }).scope === 'string';
}

/** The scope a page of a scope-ordered list starts after (null: from the first); 400 for a cursor that is not one. */
export function scopeAfter(cursor: string | null): string | null {
  return readCursor(cursor, isScopeCursor)?.scope ?? null;
}

function asScope(scope: string, reply: unknown): LedgerScope {
  const scoped = scopeFromFields(scope, reply as string[]);
  if (scoped === null) throw new Error(`ledger script answered no scope for "${scope}"`);
  return scoped;
}

/**
 * Builds the Redis ledger on top of the port it serves, so one implementation is a real subclass of
 * both BudgetLedger and CostLedger; `kind` keeps the two ledgers' keys apart.
 *
 * Layout per kind: a hash per scope (limit, spent, reserved, period, ws, updated), a hash per
 * outstanding reservation (amount, created, n, scope:1..n), a zset of reservation ids scored by created
 * time, and a lex zset of scope names for ordered, prefix-filtered listing. Every check-and-update
 * is one Lua script (lua/ledger-*.lua).
 */
function redisLedgerOn(Port: abstract new () => Ledger) {
  return class RedisLedger extends Port {
    private readonly k: ReturnType<RedisKeys['ledger']>;

    constructor(
      private readonly redis: Redis,
      keys: RedisKeys,
      kind: LedgerKind,
    ) {
      super();
      this.k = keys.ledger(kind);
    }

    private scopeKey(scope: string): string {
      return this.k.scopePrefix + scope;
    }

    private reservationKey(id: string): string {
      return this.k.reservationPrefix + id;
    }

    async reserve(reservationId: string, scopes: string[], amount: number, now = Date.now()): Promise<ReserveResult> {
      const unique = [...new Set(scopes)];
      const reply = (await runScript(
        this.redis,
        'ledgerReserve',
        [this.reservationKey(reservationId), this.k.reservations, this.k.scopes, ...unique.map((s) => this.scopeKey(s))],
        [reservationId, amount, now, ...unique],
      )) as (number | string)[];
      if (Number(reply[0]) === 1) return { ok: true };
      return {
        ok: false,
        scope: unique[Number(reply[1]) - 1],
        limit: Number(reply[2]),
        spent: Number(reply[3]),
        reserved: Number(reply[4]),
      };
    }

    private settle(reservationId: string, actual: number | null, now: number): Promise<boolean> {
      return runScript(
        this.redis,
        'ledgerSettle',
        [this.reservationKey(reservationId), this.k.reservations, this.k.scopes],
        [this.k.scopePrefix, reservationId, actual === null ? '' : actual, now],
      ).then((reply) => reply === 1);
    }

    commit(reservationId: string, actual: number, now = Date.now()): Promise<boolean> {
      return this.settle(reservationId, actual, now);
    }

    release(reservationId: string, now = Date.now()): Promise<boolean> {
      return this.settle(reservationId, null, now);
    }

    async listReservations(createdBefore: number): Promise<Reservation[]> {
      const ids = await this.redis.zrangebyscore(this.k.reservations, '-inf', `(${createdBefore}`);
      if (ids.length === 0) return [];
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hgetall(this.reservationKey(id));
      const replies = (await pipeline.exec()) ?? [];
      const found: Reservation[] = [];
      replies.forEach(([err, fields], i) => {
        if (err) throw err;
        const reservation = reservationFromHash(ids[i], fields as Record<string, string>);
        if (reservation !== null) found.push(reservation); // settled since the index was read
      });
      return found;
    }

    /** Releases in pipelined batches of the same settle script, so a reservation committed meanwhile
     * is left alone and counted only by whoever settled it. */
    async reap(createdBefore: number): Promise<number> {
      const ids = await this.redis.zrangebyscore(this.k.reservations, '-inf', `(${createdBefore}`);
      let released = 0;
      for (let i = 0; i < ids.length; i += REAP_BATCH) {
        const pipeline = this.redis.pipeline();
        const now = Date.now();
        for (const id of ids.slice(i, i + REAP_BATCH)) {
          queueScript(pipeline, 'ledgerSettle', [this.reservationKey(id), this.k.reservations, this.k.scopes], [this.k.scopePrefix, id, '', now]);
        }
        for (const [err, reply] of (await pipeline.exec()) ?? []) {
          if (err) throw err;
          if (reply === 1) released += 1;
        }
      }
      return released;
    }

    async setLimit(scope: string, limit: number | null, periodMs: number | null, now = Date.now()): Promise<LedgerScope> {
      const reply = await runScript(
        this.redis,
        'ledgerSetLimit',
        [this.scopeKey(scope), this.k.scopes],
        [scope, limit ?? '', periodMs ?? '', now],
      );
      return asScope(scope, reply);
    }

    async resetSpent(scope: string, now = Date.now()): Promise<LedgerScope | null> {
      const reply = await runScript(this.redis, 'ledgerResetSpent', [this.scopeKey(scope)], [now]);
      return reply === null ? null : asScope(scope, reply);
    }

    async get(scope: string, now = Date.now()): Promise<LedgerScope | null> {
      const stored = scopeFromFields(scope, await this.redis.hmget(this.scopeKey(scope), ...SCOPE_FIELDS));
      return stored === null ? null : rolledOver(stored, now);
    }

    async list(prefix: string | null, limit: number, cursor: string | null, now = Date.now()): Promise<Page<LedgerScope>> {
      const pageSize = Math.max(1, limit);
      const after = scopeAfter(cursor);
      const from = prefix && (after === null || after < prefix) ? `[${prefix}` : after === null ? '-' : `(${after}`;
      const names = await this.redis.zrangebylex(this.k.scopes, from, '+', 'LIMIT', 0, pageSize + 1);
      // The index is sorted, so the names with the prefix are one run starting at `from`.
      const cut = prefix ? names.findIndex((n) => !n.startsWith(prefix)) : -1;
      const matching = cut === -1 ? names : names.slice(0, cut);
      const pageNames = matching.slice(0, pageSize);
      const pipeline = this.redis.pipeline();
      for (const name of pageNames) pipeline.hmget(this.scopeKey(name), ...SCOPE_FIELDS);
      const replies = pageNames.length === 0 ? [] : ((await pipeline.exec()) ?? []);
      const items: LedgerScope[] = [];
      replies.forEach(([err, fields], i) => {
        if (err) throw err;
        const stored = scopeFromFields(pageNames[i], fields as (string | null)[]);
        if (stored !== null) items.push(rolledOver(stored, now));
      });
      const nextCursor = matching.length > pageSize ? encodeCursor({ scope: pageNames[pageNames.length - 1] }) : null;
      return { items, nextCursor };
    }

    async putScope(scope: LedgerScope): Promise<void> {
      const key = this.scopeKey(scope.scope);
      await this.redis.multi().del(key).hset(key, scopeToFields(scope)).zadd(this.k.scopes, 0, scope.scope).exec();
    }

    async putReservation(reservation: Reservation): Promise<void> {
      await runScript(
        this.redis,
        'ledgerPutReservation',
        [this.reservationKey(reservation.id), this.k.reservations],
        [reservation.id, reservation.amount, reservation.createdAt, ...reservation.scopes],
      );
    }
  };
}

export class RedisBudgetLedger extends redisLedgerOn(BudgetLedger) {
  constructor(redis: Redis, keys: RedisKeys) {
    super(redis, keys, 'tokens');
  }
}

export class RedisCostLedger extends redisLedgerOn(CostLedger) {
  constructor(redis: Redis, keys: RedisKeys) {
    super(redis, keys, 'usd_micros');
  }
}

/**
 * When a batch script call goes out (OperationBatcher): at most 256 operations per call, so no single
 * script holds Redis for long; reserves at the end of the turn or at once when four are waiting; settles
 * wait up to 5 ms for reserves to ride along with; calls in flight are not limited (Redis runs them one
 * after the other anyway, and pipelining them lets it work while the gateway handles the rest of a turn).
 */
const BATCHING: BatchingRules = { maxOps: 256, urgentFlushAt: 4, lingerMs: 5, maxInFlight: Infinity };

/**
 * Both ledgers at once (lua/accounting-batch.lua): a reserve checks every scope of both ledgers before
 * charging any (all or none, atomically, without the compensating release the parallel fallback needs),
 * a settle commits or releases both.
 *
 * Group commit, as SqliteWriter does for SQLite: reserves and settles are collected and sent as one
 * script call per batch, applied in submission order, each caller answered from its own reply, so the
 * gateway pays ioredis' per-command cost (and Redis its script dispatch) once per batch.
 * - A reserve is on its request's path: its batch goes out at the end of the event-loop turn, or at once
 *   when four reserves are waiting (BATCHING), so Redis already works on the first requests of a busy
 *   turn while the gateway handles the rest (measured faster than one call per turn; docs/benchmarks.md).
 * - A settle is not (the response has been sent): it waits up to 5 ms to ride along with the next
 *   reserves, so under load settles cost no socket write of their own.
 * If a call fails (connection lost, script refused) every caller of its batch rejects with that error;
 * an operation that fails inside the script (a key of the wrong type…) rejects alone, as it did as a
 * script of its own.
 */
export class RedisAccountingLedger extends AccountingLedger {
  /** The KEYS of every batch call: per ledger, the reservations zset and the scope index. */
  private readonly batchKeys: string[];
  /** The ARGV every batch call starts with: per ledger, the scope and the reservation key prefix. */
  private readonly batchPrefixes: string[];
  private readonly batches = new OperationBatcher<(string | number)[]>((ops) => this.send(ops), BATCHING);

  constructor(
    private readonly redis: Redis,
    keys: RedisKeys,
  ) {
    super();
    const t = keys.ledger('tokens');
    const c = keys.ledger('usd_micros');
    this.batchKeys = [t.reservations, t.scopes, c.reservations, c.scopes];
    this.batchPrefixes = [t.scopePrefix, t.reservationPrefix, c.scopePrefix, c.reservationPrefix];
  }

  async reserve(reservationId: string, scopes: string[], amounts: LedgerAmounts, now = Date.now()): Promise<AccountingReserveResult> {
    const unique = [...new Set(scopes)];
    const args = ['r', reservationId, now, amounts.tokens, amounts.usdMicros, unique.length, ...unique];
    return reserveReply((await this.batches.submit(args, true)) as BatchReply, unique);
  }

  async settle(reservationId: string, actual: LedgerAmounts | null, now = Date.now()): Promise<AccountingSettled> {
    return settleReply((await this.batches.submit(['s', reservationId, now, actual?.tokens ?? '', actual?.usdMicros ?? ''], false)) as BatchReply);
  }

  /** Sends what is waiting now; resolves once every call submitted so far is answered (close() waits for them). */
  flush(): Promise<void> {
    return this.batches.drain();
  }

  /** One script call for a batch: one reply per operation; an operation that failed in the script
   * answers an error of its own (the others still applied). */
  private async send(operations: (string | number)[][]): Promise<unknown[]> {
    const args: (string | number)[] = [...this.batchPrefixes];
    for (const own of operations) for (const arg of own) args.push(arg);
    return (await runScript(this.redis, 'accountingBatch', this.batchKeys, args)) as unknown[];
  }
}
