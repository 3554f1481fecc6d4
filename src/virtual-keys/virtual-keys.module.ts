import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { BudgetsModule } from '../budgets/budgets.module';
import { LedgerModule } from '../ledger/ledger.module';
import { KeyAdmission } from './key-admission';
import { VirtualKeyIndex } from './virtual-key-index';
import { VirtualKeysBootstrap } from './virtual-keys.bootstrap';
import { VirtualKeysController } from './virtual-keys.controller';
import { VirtualKeysService } from './virtual-keys.service';

@Module({
  imports: [AuditModule, BudgetsModule, LedgerModule],
  controllers: [VirtualKeysController],
  providers: [VirtualKeysBootstrap, VirtualKeyIndex, VirtualKeysService, KeyAdmission],
  exports: [VirtualKeyIndex, KeyAdmission],
})
export class VirtualKeysModule {}
