import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { CostsModule } from '../costs/costs.module';
import { AccountingService } from './accounting.service';
import { BudgetsController } from './budgets.controller';
import { BudgetsService } from './budgets.service';
import { ReservationsController } from './reservations.controller';
import { ReservationsService } from './reservations.service';

@Module({
  imports: [AuditModule, CostsModule],
  controllers: [BudgetsController, ReservationsController],
  providers: [AccountingService, BudgetsService, ReservationsService],
  exports: [AccountingService, BudgetsService, CostsModule],
})
export class BudgetsModule {}
