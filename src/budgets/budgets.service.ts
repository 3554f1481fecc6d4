import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { BudgetLedger } from './budget-ledger';
import { ScopeLimits } from './scope-limits';

/** The token budget feature's admin side; request accounting is AccountingService. */
@Injectable()
export class BudgetsService {
  readonly limits: ScopeLimits;

  constructor(ledger: BudgetLedger, audit: AuditService) {
    this.limits = new ScopeLimits(ledger, 'tokens', 'budget', audit);
  }
}
