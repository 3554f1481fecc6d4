import { Module } from '@nestjs/common';
import { CostsModule } from '../costs/costs.module';
import { LimitIndex } from './limit-index';
import { AccountingService } from './accounting.service';
import { SettleRecovery } from './settle-recovery.service';

/** Request accounting: the reserve before a request is forwarded and the settle when it ends, on both ledgers. */
@Module({
  imports: [CostsModule],
  providers: [AccountingService, LimitIndex, SettleRecovery],
  exports: [AccountingService, LimitIndex, SettleRecovery],
})
export class BudgetsModule {}
