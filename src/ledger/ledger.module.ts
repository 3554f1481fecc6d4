import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { BudgetsController, CostsController } from './ledger.controller';
import { ReservationReaperJob } from './reservation-reaper.job';
import { ReservationsController } from './reservations.controller';
import { ReservationsService } from './reservations.service';
import { CostLimits, TokenLimits } from './scope-limits';
import { BudgetsModule } from '../budgets/budgets.module';

/**
 * What the token and cost ledgers share: scopes and their limits (`/admin/budgets`, `/admin/costs`),
 * reservations and their reaper. The ledgers themselves are storage ports (BudgetLedger, CostLedger).
 */
@Module({
  imports: [AuditModule, BudgetsModule],
  controllers: [BudgetsController, CostsController, ReservationsController],
  providers: [TokenLimits, CostLimits, ReservationsService, ReservationReaperJob],
  exports: [TokenLimits, CostLimits],
})
export class LedgerModule {}
