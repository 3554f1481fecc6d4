import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { Counter } from 'prom-client';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MetricsService } from '../metrics/metrics.service';
import { AccountingLedger, LedgerAmounts } from '../storage/ports/accounting-ledger';
import { storageConfig } from '../storage/storage.config';
import { SettleJournal, SettleJournalRefused } from './settle-journal';
import { settleJournalConfig } from './settle-journal.config';

/** Backoff between replay attempts while the store does not answer: doubling from the first to the last. */
const FIRST_RETRY_MS = 100;
const LAST_RETRY_MS = 2000;
/** Settles replayed at once (each its own idempotent call). */
const REPLAY_CONCURRENCY = 32;
/** Replayed settles removed from the file in one rewrite. */
const REWRITE_EVERY = 1024;
/** A replayed settle that has not answered by then counts as failed (it may still land: settling twice changes nothing). */
const REPLAY_TIMEOUT_MS = 10_000;

/**
 * Settles that survive store faults (docs/budgets.md, "Store faults"). A settle the store did not take
 * is written to this replica's journal (settle-journal.ts, in DATA_DIR) before its request ends, then
 * replayed with backoff until the store answers; at start-up the journal left by a previous run is
 * replayed too. Settling is idempotent per reservation id on every backend, so a settle that did reach
 * the store before failing (its answer lost) is not charged again: the replay finds it settled.
 *
 * While anything is owed, the replica refuses new governed requests (503 storage_unavailable) and
 * `/ready` answers 503: admissions would otherwise count against budgets that do not yet hold the
 * spend of requests already served.
 */
@Injectable()
export class SettleRecovery implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(SettleRecovery.name);
  private journal: SettleJournal | null = null;
  private timer: NodeJS.Timeout | null = null;
  private replaying: Promise<void> | null = null;
  private delayMs = FIRST_RETRY_MS;
  private stopped = false;
  private readonly replays: Counter;
  private readonly retries: Counter;
  private readonly lost: Counter;

  constructor(
    private readonly ledger: AccountingLedger,
    private readonly metrics: MetricsService,
    @Inject(storageConfig.KEY) private readonly storage: ConfigType<typeof storageConfig>,
    @Inject(settleJournalConfig.KEY) private readonly bounds: ConfigType<typeof settleJournalConfig>,
  ) {
    metrics.gauge('ditto_settle_journal_depth', 'Settles this replica owes the store (journaled while it did not answer)', [], (g) => g.set(this.depth));
    this.replays = metrics.counter('ditto_settle_replays_total', 'Journaled settles the store took on replay');
    this.retries = metrics.counter('ditto_settle_retries_total', 'Replay attempts that failed because the store still did not answer');
    this.lost = metrics.counter('ditto_settle_lost_total', 'Settles neither the store nor the journal could take (logged with their amounts)');
  }

  async onModuleInit(): Promise<void> {
    const { journal, adopted, skipped } = await SettleJournal.open(this.storage.dataDir, this.bounds);
    this.journal = journal;
    if (adopted.length) this.logger.warn(`adopted the settle journals of earlier runs: ${adopted.map((f) => f.split(/[\\/]/).pop()).join(', ')}`);
    if (skipped) this.logger.error(`${skipped} unreadable settle journal line(s) skipped (a write cut short by a crash)`);
    if (journal.size) {
      this.logger.warn(`${journal.size} settle(s) from an earlier run are owed to the store: replaying them before admitting requests`);
      this.schedule(0);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.replaying;
    await this.journal?.close();
    if (this.depth) this.logger.warn(`${this.depth} settle(s) left in ${this.journal!.file}: the next start replays them`);
  }

  /** Settles journaled and not yet taken by the store. */
  get depth(): number {
    return this.journal?.size ?? 0;
  }

  /** Throws 503 storage_unavailable while settles are owed: new requests wait until the budgets hold them. */
  assertCaughtUp(): void {
    if (this.depth > 0) {
      throw new GatewayError(ErrorCode.StorageUnavailable, `the budget store is catching up on ${this.depth} settle(s) of requests already served; retry shortly`);
    }
  }

  /**
   * Keeps a settle the store did not take (`actual` null: a release) and replays it until the store
   * does. Resolves once it is on disk; throws 503 when the journal cannot take it (full, or its file
   * not writable): then the charge is logged with its amounts and counted as lost.
   */
  async defer(reservationId: string, actual: LedgerAmounts | null): Promise<void> {
    try {
      if (!this.journal) throw new SettleJournalRefused('the settle journal is not open');
      await this.journal.append({ id: reservationId, actual, at: Date.now() });
    } catch (error) {
      this.lost.inc();
      const amounts = actual ? `${actual.tokens} tokens, ${actual.usdMicros} USD micros` : 'a release';
      this.logger.error(`reservation ${reservationId}: the settle (${amounts}) is lost: ${(error as Error).message}`);
      throw new GatewayError(ErrorCode.StorageUnavailable, 'the budget store did not answer and the settle journal is full; the request was not settled');
    }
    this.schedule(this.replaying ? this.delayMs : FIRST_RETRY_MS);
  }

  /**
   * A reserve that failed may still have been applied (its answer lost, or one ledger of two took it):
   * its release is journaled like a settle, so the reservation does not hold budget until the reaper.
   * Releasing a reservation that was never made changes nothing. Rethrows `error`.
   */
  async releaseUnanswered(reservationId: string, error: unknown): Promise<never> {
    await this.defer(reservationId, null).catch(() => undefined);
    throw error;
  }

  private schedule(delayMs: number): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.replaying ??= this.replay().finally(() => (this.replaying = null));
    }, delayMs);
    this.timer.unref();
  }

  /**
   * Replays what is owed, oldest first, REPLAY_CONCURRENCY at a time, until the journal is empty or the
   * store fails again (then backs off). The file is rewritten once per REWRITE_EVERY replayed settles
   * and when the replay stops, not per settle.
   */
  private async replay(): Promise<void> {
    const journal = this.journal!;
    let offset = 0;
    let done = new Set<string>();
    const forget = async () => {
      const replayed = done;
      done = new Set();
      offset = 0;
      await journal.remove(replayed).catch((error: Error) => this.logger.error(`the settle journal could not be rewritten: ${error.message}`));
    };
    while (offset < journal.size && !this.stopped) {
      const batch = journal.pending.slice(offset, offset + REPLAY_CONCURRENCY);
      const results = await Promise.allSettled(batch.map((e) => withTimeout(this.ledger.settle(e.id, e.actual), REPLAY_TIMEOUT_MS)));
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      batch.forEach((e, i) => results[i].status === 'fulfilled' && done.add(e.id));
      this.replays.inc(results.filter((r) => r.status === 'fulfilled').length);
      offset += batch.length;
      if (failure) {
        await forget();
        this.retries.inc();
        this.metrics.storageErrors.inc({ operation: 'ledger.replay' });
        this.logger.warn(`replaying ${journal.size} journaled settle(s): the store did not answer (${(failure.reason as Error).message}); retrying in ${this.delayMs} ms`);
        const delay = this.delayMs;
        this.delayMs = Math.min(this.delayMs * 2, LAST_RETRY_MS);
        this.schedule(delay);
        return;
      }
      if (done.size >= REWRITE_EVERY || offset >= journal.size) await forget();
    }
    if (done.size) await forget();
    if (!this.stopped && this.delayMs > FIRST_RETRY_MS) this.logger.log('the settle journal is replayed: every settle owed reached the store');
    this.delayMs = FIRST_RETRY_MS;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
