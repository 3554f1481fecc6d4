import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { ScopeLimits } from '../budgets/scope-limits';
import type { ConfigType } from '@nestjs/config';
import { pricingConfig } from './pricing.config';
import { CostLedger } from './cost-ledger';
import { ModelPrice, PricingTable } from './pricing';

/**
 * The cost feature's service: the pricing table and the USD-micros ledger's admin side and reads.
 * Request accounting reserves and settles through AccountingLedger (both ledgers at once).
 */
@Injectable()
export class CostsService {
  readonly limits: ScopeLimits;
  private readonly pricing: PricingTable;

  constructor(
    private readonly ledger: CostLedger,
    @Inject(pricingConfig.KEY) pricing: ConfigType<typeof pricingConfig>,
    audit: AuditService,
  ) {
    this.pricing = pricing;
    this.limits = new ScopeLimits(ledger, 'usd_micros', 'cost', audit);
  }

  price(model: string | null): ModelPrice | null {
    return this.pricing.lookup(model);
  }

  /** The cost limits of the given scopes that exist (one read per scope, in parallel). */
  async limitedScopes(scopes: string[]): Promise<Array<{ scope: string; limit: number; spent: number; reserved: number }>> {
    const found = await Promise.all(scopes.map((scope) => this.ledger.get(scope)));
    return found.flatMap((s) => (s !== null && s.limit !== null ? [{ scope: s.scope, limit: s.limit, spent: s.spent, reserved: s.reserved }] : []));
  }

  listReservations(createdBefore: number) {
    return this.ledger.listReservations(createdBefore);
  }

  reap(createdBefore: number): Promise<number> {
    return this.ledger.reap(createdBefore);
  }
}
