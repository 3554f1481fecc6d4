import { Module } from '@nestjs/common';
import { CostsModule } from '../costs/costs.module';
import { LedgerModule } from '../ledger/ledger.module';
import { AccountingService } from './accounting.service';

/** Request accounting: the reserve before a request is forwarded and the settle when it ends, on both ledgers. */
@Module({
  imports: [CostsModule, LedgerModule],
  providers: [AccountingService],
  exports: [AccountingService],
})
export class BudgetsModule {}
