import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MAX_REQUEST_TOKENS, MAX_REQUEST_UNITS } from '../common/numeric-limits';
import type { ConfigType } from '@nestjs/config';
import { budgetsConfig } from './budgets.config';
import { CostsService } from '../costs/costs.service';
import { MetricsService } from '../metrics/metrics.service';
import { ModelPrice, UsageCounts, costMicros } from '../costs/pricing';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { AccountingLedger, AccountingReserveResult } from '../storage/ports/accounting-ledger';
import { scopesOf } from '../ledger/domain/scopes';
import { LimitIndex } from './limit-index';
import { Estimate, Meter, billing, estimate, estimateCost, expectedTokensOf, meterOf, tokensOf } from './metering';
import { OutputField } from './token-estimate';
import { SettleRecovery } from './settle-recovery.service';

type Json = Record<string, unknown>;
/** Usage as the upstream reported it (tokens, or seconds, characters, images). */
type Reported = UsageCounts & { totalTokens: number };

/** One request's open reservation on both ledgers. */
export interface Charge {
  /** Reservation id on both ledgers: generated here, never the client's request id (which may repeat). */
  id: string;
  scopes: string[];
  price: ModelPrice | null;
  estimate: Estimate;
  /** What was reserved: the most the request may be charged unless its usage turns out larger. */
  reserved: { tokens: number; usdMicros: number };
}

/** What a request asks for, as the budget stage sees it. */
export interface MeteredRequest {
  method: string;
  /** Path after `/v1`, no query. */
  path: string;
  body: Json | null;
  model: string | null;
  /** Bytes of a multipart upload (content-length, else UPLOAD_LIMIT_BYTES); 0 for JSON bodies. */
  uploadBytes: number;
  /** Its worst case, once estimated (the rate limit's tpm count and the reserve share one tokenization). */
  worst?: Estimate;
}

export interface Admission {
  charge: Charge;
  /** Strict mode: the output limit per choice the forwarded request must carry (set or lowered), or null to leave it. */
  outputCap: { field: OutputField; tokens: number } | null;
}

/**
 * How a governed request ended, for its settle (docs/budgets.md, "What is charged"):
 * - `complete`: the upstream answered 2xx and the client had it all;
 * - `lost`: the request reached the upstream, which may have done the work, but no complete answer
 *   came back (timeout, reset, the client left): charged the reservation, or the usage seen when larger;
 * - `failed`: nothing was produced (not sent, or the upstream refused with an error status): released.
 */
export type Outcome = 'complete' | 'lost' | 'failed';

/** What a settled request was charged. */
export interface Settlement {
  tokens: number;
  usdMicros: number;
  /**
   * `usage`: the upstream's; `estimate`: the reservation (no usage came back, or less than reserved of
   * a lost request); `released`: nothing charged; `held`: nothing charged yet, the reservation is held
   * for a background response until it is seen ended.
   */
  basis: 'usage' | 'estimate' | 'released' | 'held';
  /** Tokens charged beyond the reservation (the estimate was short): 0 when it held. */
  overshootTokens: number;
}

/** Paths whose responses are generated tokens, capped by an output limit. */
const OUTPUT_FIELD_BY_PATH: Record<string, OutputField> = {
  '/chat/completions': 'max_tokens',
  '/completions': 'max_tokens',
  '/responses': 'max_output_tokens',
};
/** Reasoning models refuse `max_tokens` on chat completions. */
const COMPLETION_TOKENS_MODELS = /^(o\d|gpt-5)/;

/**
 * Budget and cost accounting on the request path (docs/architecture.md, docs/budgets.md): before forwarding, one atomic
 * reserve of the estimate on every scope of the key, on the token ledger and the cost ledger at once
 * (AccountingLedger: one transaction on SQLite; elsewhere the two ledger calls in parallel, one round
 * trip of latency, the other's reservation released when one refuses); when the response ends, one
 * settle of both.
 */
@Injectable()
export class AccountingService {
  private readonly logger = new Logger(AccountingService.name);
  private readonly settings: ConfigType<typeof budgetsConfig>;
  private readonly inFlight: Gauge;
  private readonly overshoot: Counter;

  constructor(
    private readonly accounting: AccountingLedger,
    private readonly costs: CostsService,
    private readonly limits: LimitIndex,
    private readonly metrics: MetricsService,
    private readonly recovery: SettleRecovery,
    @Inject(budgetsConfig.KEY) settings: ConfigType<typeof budgetsConfig>,
  ) {
    this.settings = settings;
    this.inFlight = metrics.gauge('ditto_budget_reservations_in_flight', 'Reservations this replica holds for requests in flight');
    this.overshoot = metrics.counter('ditto_budget_overshoot_tokens_total', 'Tokens charged beyond what their requests reserved (usage above the estimate)');
  }

  /** The tokens a request may use, prompt and output of every choice (what the tpm rate limit counts at admission). */
  estimateTokens(request: MeteredRequest): number {
    const meter = meterOf(request.method, request.path);
    if (meter === 'none') return 0;
    return expectedTokensOf(this.worstCase(meter, request));
  }

  /**
   * Reserves the request's worst case on every scope of the key, or throws 402 (budget_exceeded,
   * cost_budget_exceeded, cost_unknown_model) having reserved nothing. Null for a request that bills
   * nothing (files, batches, listings, moderations…): it is neither reserved nor charged.
   */
  async admit(key: VirtualKey, request: MeteredRequest): Promise<Admission | null> {
    const meter = meterOf(request.method, request.path);
    if (meter === 'none') return null;
    this.recovery.assertCaughtUp();
    const scopes = scopesOf(key);
    const price = this.costs.price(request.model);
    const worst = this.worstCase(meter, request);
    const limited = this.limits.of(key, scopes);
    if (!billing(meter, price).priced) this.refuseUnpricedUnderCostLimit(limited.cost, request.model);

    // Strict mode, for a request whose scopes have a limit: an output limit it does not set itself is
    // written (the reserved worst case), one it sets is lowered to what fits should the reserve refuse.
    const capField = meter === 'generate' ? (worst.outputField ?? outputFieldFor(request.path, request.model)) : null;
    const strict = this.settings.mode === 'strict' && capField !== null && (limited.tokens || (limited.cost !== null && price !== null));
    let outputCap: Admission['outputCap'] = strict && worst.outputField === null ? { field: capField, tokens: worst.perChoice } : null;
    for (let attempt = 1; ; attempt++) {
      const reserved = { tokens: tokensOf(worst), usdMicros: estimateCost(worst, price) };
      const charge: Charge = { id: randomUUID(), scopes, price, estimate: worst, reserved };
      const result = await this.storage('reserve', () => this.accounting.reserve(charge.id, scopes, reserved)).catch((error: unknown) => this.recovery.releaseUnanswered(charge.id, error));
      if (result.ok) {
        this.inFlight.inc();
        return { charge, outputCap };
      }
      if (!strict || attempt === STRICT_ATTEMPTS) throw refusal(result, reserved.tokens, reserved.usdMicros);
      // Strict: the refusing scope's numbers say how much output fits; reserve that instead (no reads).
      const perChoice = Math.floor(outputRoom(result, worst.promptTokens, price) / worst.choices);
      if (perChoice < 1) {
        const code = result.ledger === 'tokens' ? ErrorCode.BudgetExceeded : ErrorCode.CostBudgetExceeded;
        throw new GatewayError(code, `${result.ledger === 'tokens' ? 'token budget' : 'cost budget'} of scope '${result.scope}' leaves no room for ${worst.choices > 1 ? `${worst.choices} responses` : 'a response'} to this prompt (up to ${worst.promptTokens} tokens)`);
      }
      if (perChoice < worst.perChoice) {
        worst.perChoice = perChoice;
        outputCap = { field: capField, tokens: perChoice };
      }
    }
  }

  /** The request's worst case (metering.ts `estimate`), estimated once per request. */
  private worstCase(meter: Meter, request: MeteredRequest): Estimate {
    const context = { price: this.costs.price(request.model), defaultOutputTokens: this.settings.defaultOutputTokens, uploadBytes: request.uploadBytes };
    return (request.worst ??= estimate(meter, request.path, request.body, context));
  }

  /**
   * Reserves a fixed number of tokens on every scope of the key, for work whose size no request body
   * tells (one response of a realtime session), priced as output tokens (the dearer kind). Throws 402
   * like `admit`, having reserved nothing. Settled with `settle` like any charge.
   */
  async admitFixed(key: VirtualKey, model: string | null, tokens: number): Promise<Charge> {
    this.recovery.assertCaughtUp();
    const scopes = scopesOf(key);
    const price = this.costs.price(model);
    if (!billing('generate', price).priced) this.refuseUnpricedUnderCostLimit(this.limits.of(key, scopes).cost, model);
    return this.reserve(scopes, price, { meter: 'generate', promptTokens: 0, expectedPromptTokens: 0, choices: 1, perChoice: tokens, outputField: null, units: null });
  }

  /**
   * Charges usage no reservation was held for (a realtime response that ended after its session's
   * budget ran out): recorded through an empty reservation, settled at once. A scope already over its
   * limit refuses even that; then the charge is logged as lost, never silently dropped.
   */
  async chargeUnreserved(key: VirtualKey, model: string | null, usage: Reported): Promise<Settlement> {
    const scopes = scopesOf(key);
    const nothing: Estimate = { meter: 'generate', promptTokens: 0, expectedPromptTokens: 0, choices: 1, perChoice: 0, outputField: null, units: null };
    const charge: Charge = { id: randomUUID(), scopes, price: this.costs.price(model), estimate: nothing, reserved: { tokens: 0, usdMicros: 0 } };
    const opened = await this.storage('reserve', () => this.accounting.reserve(charge.id, scopes, { tokens: 0, usdMicros: 0 }));
    const bounded = boundedUsage(usage);
    const usdMicros = charge.price === null ? 0 : costMicros(charge.price, bounded);
    if (!opened.ok) {
      this.logger.error(`usage of key '${key.id}' (${bounded.totalTokens} tokens, ${usdMicros} USD micros) could not be recorded: scope ${opened.scope} is over its limit`);
      return { tokens: 0, usdMicros: 0, basis: 'released', overshootTokens: 0 };
    }
    this.inFlight.inc();
    return this.settle(charge, bounded, 'complete');
  }

  /**
   * A background response (`background: true`) was queued: its reservation moves to the response's id
   * (reserved there first, then released here, so the scope never shows the room free in between),
   * held until the gateway sees the response ended (`settleBackground`, on any replica) or the reaper
   * charges it what it holds after RESERVATION_TTL_SECS (ReservationsService). A scope without room for
   * the reservation twice over is charged the reservation at once instead: never more than its limit,
   * never waiting.
   */
  async holdForBackground(charge: Charge, responseId: string): Promise<Settlement> {
    const held = await this.storage('reserve', () => this.accounting.reserve(backgroundId(responseId), charge.scopes, charge.reserved));
    if (held.ok) {
      this.inFlight.dec();
      await this.storage('settle', () => this.accounting.settle(charge.id, null));
      return { tokens: 0, usdMicros: 0, basis: 'held', overshootTokens: 0 };
    }
    this.logger.warn(`background response ${responseId}: scope ${held.scope} has no room to hold its reservation; charged the reservation now`);
    return this.settle(charge, null, 'lost');
  }

  /**
   * A background response seen ended (a GET of it, its stream, or its cancel): charges its usage at
   * the price of the model that served it, or releases it without usage, exactly once across replicas
   * (the ledger settles a reservation id once). Null when there was nothing held under that id: not a
   * background response created through the gateway, settled already, or reaped.
   */
  async settleBackground(responseId: string, usage: Reported | null, model: string | null): Promise<Settlement | null> {
    const price = this.costs.price(model);
    const bounded = usage === null ? null : boundedUsage(usage);
    const amounts = bounded === null ? null : { tokens: bounded.totalTokens, usdMicros: price === null ? 0 : costMicros(price, bounded) };
    const settled = await this.storage('settle', () => this.accounting.settle(backgroundId(responseId), amounts));
    if (!settled.tokens && !settled.usdMicros) return null;
    return amounts === null ? { tokens: 0, usdMicros: 0, basis: 'released', overshootTokens: 0 } : { ...amounts, basis: 'usage', overshootTokens: 0 };
  }

  /** How long a reservation may stay open before the reaper releases it (RESERVATION_TTL_SECS). */
  get reservationTtlMs(): number {
    return this.settings.reservationTtlMs;
  }

  private async reserve(scopes: string[], price: ModelPrice | null, worst: Estimate): Promise<Charge> {
    const reserved = { tokens: tokensOf(worst), usdMicros: estimateCost(worst, price) };
    const charge: Charge = { id: randomUUID(), scopes, price, estimate: worst, reserved };
    const result = await this.storage('reserve', () => this.accounting.reserve(charge.id, scopes, reserved)).catch((error: unknown) => this.recovery.releaseUnanswered(charge.id, error));
    if (!result.ok) throw refusal(result, reserved.tokens, reserved.usdMicros);
    this.inFlight.inc();
    return charge;
  }

  /**
   * Settles a charge exactly once, by how its request ended (`Outcome`): `complete` charges the
   * upstream's usage (a request whose usage the request itself says, speech characters, that; one
   * with no usage at all, the reservation); `lost` charges the reservation or the usage seen when
   * larger; `failed` releases it. A reservation the reaper released meanwhile is charged anyway, as a
   * new metering-only entry. A settle the store does not take is journaled and replayed once it
   * answers (SettleRecovery); only when the journal cannot take it either does this throw 503.
   */
  async settle(charge: Charge, usage: Reported | null, outcome: Outcome): Promise<Settlement> {
    this.inFlight.dec();
    const settlement: Settlement = outcome === 'failed' ? { tokens: 0, usdMicros: 0, basis: 'released', overshootTokens: 0 } : this.settlementOf(charge, usage, outcome);
    try {
      await this.storage('settle', () => this.settleOnLedgers(charge, settlement));
    } catch (error) {
      if (!(error instanceof GatewayError) || error.code !== ErrorCode.StorageUnavailable) throw error;
      await this.recovery.defer(charge.id, settlement.basis === 'released' ? null : { tokens: settlement.tokens, usdMicros: settlement.usdMicros });
    }
    return settlement;
  }

  private settlementOf(charge: Charge, reported: Reported | null, outcome: Exclude<Outcome, 'failed'>): Settlement {
    const amounts = this.amounts(charge, reported, outcome);
    const overshootTokens = Math.max(0, amounts.tokens - charge.reserved.tokens);
    if (overshootTokens > 0) this.overshoot.inc(overshootTokens);
    return { ...amounts, overshootTokens };
  }

  private async settleOnLedgers(charge: Charge, settlement: Settlement): Promise<void> {
    if (settlement.basis === 'released') {
      await this.accounting.settle(charge.id, null);
      return;
    }
    const { tokens, usdMicros } = settlement;
    const { tokens: byTokens, usdMicros: byCost } = await this.accounting.settle(charge.id, { tokens, usdMicros });
    if (!byTokens || !byCost) {
      this.logger.warn(`reservation ${charge.id} was reaped before its request ended (RESERVATION_TTL_SECS too short?); charging it now`);
      await this.chargeLate(charge, byTokens ? 0 : tokens, byCost ? 0 : usdMicros);
    }
  }

  /** Charges amounts no reservation is open for any more: a metering-only entry, reserved empty and settled. */
  private async chargeLate(charge: Charge, tokens: number, usdMicros: number): Promise<void> {
    const late = `${charge.id}:late`;
    const opened = await this.accounting.reserve(late, charge.scopes, { tokens: 0, usdMicros: 0 });
    // A scope already over its limit (usage beyond the estimate) refuses even an empty reservation:
    // the late charge cannot be recorded then. Say so rather than lose it silently.
    if (!opened.ok) {
      this.logger.error(`reservation ${charge.id}: the late charge (${tokens} tokens, ${usdMicros} USD micros) could not be recorded: scope ${opened.scope} is over its limit`);
    }
    await this.accounting.settle(late, { tokens, usdMicros });
  }

  /** What a settled request is charged on each ledger (see `settle`). */
  private amounts(charge: Charge, reported: Reported | null, outcome: Exclude<Outcome, 'failed'>): Omit<Settlement, 'overshootTokens'> {
    const { units } = charge.estimate;
    // Speech: the characters sent are the usage; no response reports them.
    const usage = reported ? boundedUsage(reported) : units?.exact ? { ...NO_TOKENS, [units.unit]: units.quantity } : null;
    const reserved = { ...charge.reserved, basis: 'estimate' as const };
    if (usage === null) return reserved;
    const used = { tokens: usage.totalTokens, usdMicros: charge.price === null ? 0 : costMicros(charge.price, usage), basis: 'usage' as const };
    if (outcome === 'complete') return used;
    // Lost: the reservation, or what was seen when larger, ledger by ledger.
    return used.tokens >= reserved.tokens && used.usdMicros >= reserved.usdMicros
      ? used
      : { tokens: Math.max(used.tokens, reserved.tokens), usdMicros: Math.max(used.usdMicros, reserved.usdMicros), basis: 'estimate' };
  }

  /** Runs a ledger call; a failure is counted and becomes 503 storage_unavailable (nothing forwarded). */
  private async storage<T>(operation: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof GatewayError) throw error;
      this.metrics.storageErrors.inc({ operation: `ledger.${operation}` });
      this.logger.error(`ledger ${operation} failed: ${(error as Error).message}`);
      throw new GatewayError(ErrorCode.StorageUnavailable, `the budget store did not answer; the request was not ${operation === 'settle' ? 'settled' : 'forwarded'}`);
    }
  }

  /** An unpriced model cannot be charged against a cost limit: refuse rather than charge zero (COST_UNKNOWN_MODEL=refuse). */
  private refuseUnpricedUnderCostLimit(limitedScope: string | null, model: string | null): void {
    if (limitedScope === null || this.settings.unknownModelCost !== 'refuse') return;
    throw new GatewayError(
      ErrorCode.CostUnknownModel,
      `model '${model ?? '(none)'}' has no price and scope '${limitedScope}' has a cost limit: add the model to the pricing table (or set COST_UNKNOWN_MODEL=allow to charge it 0)`,
      'model',
    );
  }
}

/** Reserves strict mode tries, each lowering the output to what the scope that refused the last one has room for. */
const STRICT_ATTEMPTS = 4;

/**
 * The most output tokens (all choices together) a refused reserve's scope has room for after the
 * prompt, by tokens or (a priced model) by cost; negative when not even the prompt fits.
 */
function outputRoom(refused: Extract<AccountingReserveResult, { ok: false }>, promptTokens: number, price: ModelPrice | null): number {
  const left = refused.limit - refused.spent - refused.reserved;
  if (refused.ledger === 'tokens') return left - promptTokens;
  if (price === null || price.outputPico === 0n) return -1;
  const pico = BigInt(left) * 1_000_000n - BigInt(promptTokens) * price.inputPico;
  return pico < 0n ? -1 : Number(pico / price.outputPico);
}

/**
 * The usage an upstream reported, each count at most MAX_REQUEST_TOKENS (units at most
 * MAX_REQUEST_UNITS): a broken or hostile upstream answering 1e300 tokens is charged the most one
 * request can be, not a number no ledger adds exactly.
 */
function boundedUsage(usage: Reported): Reported {
  const bound = (n: number) => Math.min(n, MAX_REQUEST_TOKENS);
  const bounded: Reported = { promptTokens: bound(usage.promptTokens), completionTokens: bound(usage.completionTokens), cachedTokens: bound(usage.cachedTokens), totalTokens: bound(usage.totalTokens) };
  if (usage.cacheWriteTokens !== undefined) bounded.cacheWriteTokens = bound(usage.cacheWriteTokens);
  for (const unit of ['seconds', 'characters', 'images'] as const) {
    if (usage[unit] !== undefined) bounded[unit] = Math.min(usage[unit], MAX_REQUEST_UNITS);
  }
  return bounded;
}

const NO_TOKENS = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, totalTokens: 0 };

/** The reservation id a background response is held under: the upstream's response id, which every replica sees. */
const BACKGROUND_PREFIX = 'bg:';
const backgroundId = (responseId: string) => `${BACKGROUND_PREFIX}${responseId}`;

/** The response id a reservation holds for (holdForBackground), or null when it is not a background hold. */
export const heldBackgroundResponse = (reservationId: string): string | null =>
  reservationId.startsWith(BACKGROUND_PREFIX) ? reservationId.slice(BACKGROUND_PREFIX.length) : null;

function outputFieldFor(path: string, model: string | null): OutputField | null {
  const field = OUTPUT_FIELD_BY_PATH[path] ?? null;
  return field === 'max_tokens' && path === '/chat/completions' && model !== null && COMPLETION_TOKENS_MODELS.test(model) ? 'max_completion_tokens' : field;
}

function refusal(refused: Extract<AccountingReserveResult, { ok: false }>, tokens: number, usdMicros: number): GatewayError {
  if (refused.ledger === 'tokens') {
    return new GatewayError(
      ErrorCode.BudgetExceeded,
      `token budget exceeded for scope '${refused.scope}': limit ${refused.limit}, spent ${refused.spent}, reserved ${refused.reserved}; this request needs up to ${tokens} tokens`,
    );
  }
  return new GatewayError(
    ErrorCode.CostBudgetExceeded,
    `cost budget exceeded for scope '${refused.scope}': limit ${refused.limit} USD micros, spent ${refused.spent}, reserved ${refused.reserved}; this request may cost up to ${usdMicros}`,
  );
}
