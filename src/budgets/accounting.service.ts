import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Gauge } from 'prom-client';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MAX_REQUEST_TOKENS } from '../common/numeric-limits';
import type { ConfigType } from '@nestjs/config';
import { budgetsConfig } from './budgets.config';
import { CostsService } from '../costs/costs.service';
import { MetricsService } from '../metrics/metrics.service';
import { ModelPrice, TokenCounts, costMicros } from '../costs/pricing';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { BudgetLedger } from '../storage/ports/budget-ledger';
import { CostLedger } from '../storage/ports/cost-ledger';
import { AccountingLedger, AccountingReserveResult } from '../storage/ports/accounting-ledger';
import { scopesOf } from '../ledger/domain/scopes';
import { OutputField, estimateRequest } from './token-estimate';

type Json = Record<string, unknown>;

/** One request's open reservation on both ledgers. */
export interface Charge {
  /** Reservation id on both ledgers: generated here, never the client's request id (which may repeat). */
  id: string;
  scopes: string[];
  price: ModelPrice | null;
  estimate: { promptTokens: number; outputTokens: number; tokens: number; usdMicros: number };
}

export interface Admission {
  charge: Charge;
  /** Strict mode: the output limit the forwarded request must carry (set or lowered), or null to leave it. */
  outputCap: { field: OutputField; tokens: number } | null;
}

/** What a settled request was charged. */
export interface Settlement {
  tokens: number;
  usdMicros: number;
  /** `usage`: the upstream's; `estimate`: no usage came back; `released`: nothing charged. */
  basis: 'usage' | 'estimate' | 'released';
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

  constructor(
    private readonly ledger: BudgetLedger,
    private readonly costLedger: CostLedger,
    private readonly accounting: AccountingLedger,
    private readonly costs: CostsService,
    private readonly metrics: MetricsService,
    @Inject(budgetsConfig.KEY) settings: ConfigType<typeof budgetsConfig>,
  ) {
    this.settings = settings;
    this.inFlight = metrics.gauge('ditto_budget_reservations_in_flight', 'Reservations this replica holds for requests in flight');
  }

  /** The tokens a request may use, prompt and output (what the tpm rate limit counts at admission). */
  estimateTokens(path: string, body: Json | null): number {
    const estimate = estimateRequest(path, body ?? {}, this.settings.defaultOutputTokens);
    return estimate.promptTokens + estimate.outputTokens;
  }

  /**
   * Reserves the request's estimate on every scope of the key, or throws 402 (budget_exceeded,
   * cost_budget_exceeded, cost_unknown_model) having reserved nothing.
   */
  async admit(key: VirtualKey, path: string, body: Json | null, model: string | null): Promise<Admission> {
    const scopes = scopesOf(key);
    const estimate = estimateRequest(path, body ?? {}, this.settings.defaultOutputTokens);
    const price = this.costs.price(model);
    // Reads too: a store that does not answer is 503 storage_unavailable here as for the reserve, not a 500.
    if (price === null && this.settings.unknownModelCost === 'refuse') await this.storage('read', () => this.refuseUnpricedUnderCostLimit(key, scopes, model));

    let output = estimate.outputTokens;
    let outputCap: Admission['outputCap'] = null;
    const capField = estimate.outputField ?? outputFieldFor(path, model);
    if (this.settings.mode === 'strict' && capField !== null) {
      const room = await this.storage('read', () => this.outputRoom(scopes, estimate.promptTokens, price));
      if (room !== null) output = Math.min(output, room);
      if (estimate.outputField === null || output < estimate.outputTokens) outputCap = { field: capField, tokens: output };
    }

    return { charge: await this.reserve(scopes, price, estimate.promptTokens, output), outputCap };
  }

  /**
   * Reserves a fixed number of tokens on every scope of the key, for work whose size no request body
   * tells (one response of a realtime session), priced as output tokens (the dearer kind). Throws 402
   * like `admit`, having reserved nothing. Settled with `settle` like any charge.
   */
  async admitFixed(key: VirtualKey, model: string | null, tokens: number): Promise<Charge> {
    const scopes = scopesOf(key);
    const price = this.costs.price(model);
    if (price === null && this.settings.unknownModelCost === 'refuse') await this.storage('read', () => this.refuseUnpricedUnderCostLimit(key, scopes, model));
    return this.reserve(scopes, price, 0, tokens);
  }

  /**
   * Charges usage no reservation was held for (a realtime response that ended after its session's
   * budget ran out): recorded through an empty reservation, settled at once. A scope already over its
   * limit refuses even that; then the charge is logged as lost, never silently dropped.
   */
  async chargeUnreserved(key: VirtualKey, model: string | null, usage: TokenCounts & { totalTokens: number }): Promise<Settlement> {
    const scopes = scopesOf(key);
    const charge: Charge = { id: randomUUID(), scopes, price: this.costs.price(model), estimate: { promptTokens: 0, outputTokens: 0, tokens: 0, usdMicros: 0 } };
    const opened = await this.storage('reserve', () => this.accounting.reserve(charge.id, scopes, { tokens: 0, usdMicros: 0 }));
    const bounded = boundedUsage(usage);
    const usdMicros = charge.price === null ? 0 : costMicros(charge.price, bounded);
    if (!opened.ok) {
      this.logger.error(`usage of key '${key.id}' (${bounded.totalTokens} tokens, ${usdMicros} USD micros) could not be recorded: scope ${opened.scope} is over its limit`);
      return { tokens: 0, usdMicros: 0, basis: 'released' };
    }
    this.inFlight.inc();
    return this.settle(charge, bounded, false);
  }

  /** How long a reservation may stay open before the reaper releases it (RESERVATION_TTL_SECS). */
  get reservationTtlMs(): number {
    return this.settings.reservationTtlMs;
  }

  private async reserve(scopes: string[], price: ModelPrice | null, promptTokens: number, outputTokens: number): Promise<Charge> {
    const tokens = promptTokens + outputTokens;
    const usdMicros = price === null ? 0 : costMicros(price, { promptTokens, completionTokens: outputTokens, cachedTokens: 0 });
    const charge: Charge = { id: randomUUID(), scopes, price, estimate: { promptTokens, outputTokens, tokens, usdMicros } };
    const reserved = await this.storage('reserve', () => this.accounting.reserve(charge.id, scopes, { tokens, usdMicros }));
    if (!reserved.ok) throw refusal(reserved, tokens, usdMicros);
    this.inFlight.inc();
    return charge;
  }

  /**
   * Settles a charge exactly once: with the upstream's usage when there is one, else with the estimate
   * (`chargeEstimate`: the upstream may have done the work) or by releasing it (nothing was produced).
   * A reservation the reaper released meanwhile is charged anyway, as a new metering-only entry.
   */
  async settle(charge: Charge, usage: (TokenCounts & { totalTokens: number }) | null, chargeEstimate: boolean): Promise<Settlement> {
    this.inFlight.dec();
    return this.storage('settle', () => this.settleOnLedgers(charge, usage, chargeEstimate));
  }

  private async settleOnLedgers(charge: Charge, reported: (TokenCounts & { totalTokens: number }) | null, chargeEstimate: boolean): Promise<Settlement> {
    const usage = reported && boundedUsage(reported);
    if (usage === null && !chargeEstimate) {
      await this.accounting.settle(charge.id, null);
      return { tokens: 0, usdMicros: 0, basis: 'released' };
    }
    const tokens = usage === null ? charge.estimate.tokens : usage.totalTokens;
    const usdMicros = charge.price === null ? 0 : usage === null ? charge.estimate.usdMicros : costMicros(charge.price, usage);
    const { tokens: byTokens, usdMicros: byCost } = await this.accounting.settle(charge.id, { tokens, usdMicros });
    if (!byTokens || !byCost) {
      this.logger.warn(`reservation ${charge.id} was reaped before its request ended (RESERVATION_TTL_SECS too short?); charging it now`);
      const late = `${charge.id}:late`;
      const opened = await this.accounting.reserve(late, charge.scopes, { tokens: 0, usdMicros: 0 });
      // A scope already over its limit (usage beyond the estimate) refuses even an empty reservation:
      // the late charge cannot be recorded then. Say so rather than lose it silently.
      if (!opened.ok) {
        this.logger.error(`reservation ${charge.id}: the late charge (${tokens} tokens, ${usdMicros} USD micros) could not be recorded: scope ${opened.scope} is over its limit`);
      }
      await this.accounting.settle(late, { tokens: byTokens ? 0 : tokens, usdMicros: byCost ? 0 : usdMicros });
    }
    return { tokens, usdMicros, basis: usage === null ? 'estimate' : 'usage' };
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

  /**
   * Strict mode: the most output tokens the request may produce so that no limited scope goes over,
   * by tokens and (for a priced model) by cost; null when no scope has a limit. One read per scope and
   * ledger, in parallel. Refuses when not even one output token fits.
   */
  private async outputRoom(scopes: string[], promptTokens: number, price: ModelPrice | null): Promise<number | null> {
    const [tokenScopes, costScopes] = await Promise.all([
      Promise.all(scopes.map((scope) => this.ledger.get(scope))),
      price === null ? Promise.resolve([]) : this.costLimited(scopes),
    ]);
    let room: number | null = null;
    let tightest: { scope: string; code: ErrorCode } | null = null;
    for (const s of tokenScopes) {
      if (s === null || s.limit === null) continue;
      const fits = s.limit - s.spent - s.reserved - promptTokens;
      if (room === null || fits < room) [room, tightest] = [fits, { scope: s.scope, code: ErrorCode.BudgetExceeded }];
    }
    if (price !== null && price.outputPico > 0n) {
      for (const s of costScopes) {
        const left = BigInt(s.limit - s.spent - s.reserved) * 1_000_000n - BigInt(promptTokens) * price.inputPico;
        const fits = left < 0n ? -1 : Number(left / price.outputPico);
        if (room === null || fits < room) [room, tightest] = [fits, { scope: s.scope, code: ErrorCode.CostBudgetExceeded }];
      }
    }
    if (room !== null && room < 1 && tightest !== null) {
      throw new GatewayError(tightest.code, `${tightest.code === ErrorCode.BudgetExceeded ? 'token budget' : 'cost budget'} of scope '${tightest.scope}' leaves no room for a response to this prompt (~${promptTokens} tokens)`);
    }
    return room;
  }

  /** The cost limits of the given scopes that exist (one read per scope, in parallel). */
  private async costLimited(scopes: string[]): Promise<Array<{ scope: string; limit: number; spent: number; reserved: number }>> {
    const found = await Promise.all(scopes.map((scope) => this.costLedger.get(scope)));
    return found.flatMap((s) => (s !== null && s.limit !== null ? [{ scope: s.scope, limit: s.limit, spent: s.spent, reserved: s.reserved }] : []));
  }

  /** An unpriced model cannot be charged against a cost limit: refuse rather than charge zero. */
  private async refuseUnpricedUnderCostLimit(key: VirtualKey, scopes: string[], model: string | null): Promise<void> {
    const limited = key.budget.totalUsdMicros !== null ? [`key:${key.id}`] : (await this.costLimited(scopes)).map((s) => s.scope);
    if (limited.length === 0) return;
    throw new GatewayError(
      ErrorCode.CostUnknownModel,
      `model '${model ?? '(none)'}' has no price and scope '${limited[0]}' has a cost limit: add the model to the pricing table (or set COST_UNKNOWN_MODEL=allow to charge it 0)`,
      'model',
    );
  }
}

/**
 * The usage an upstream reported, each count at most MAX_REQUEST_TOKENS: a broken or hostile upstream
 * answering 1e300 tokens is charged the most one request can be, not a number no ledger adds exactly.
 */
function boundedUsage(usage: TokenCounts & { totalTokens: number }): TokenCounts & { totalTokens: number } {
  const bound = (n: number) => Math.min(n, MAX_REQUEST_TOKENS);
  return { promptTokens: bound(usage.promptTokens), completionTokens: bound(usage.completionTokens), cachedTokens: bound(usage.cachedTokens), totalTokens: bound(usage.totalTokens) };
}

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
