import { Global, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { AuditLogRepository } from './ports/audit-log.repository';
import { BudgetLedger } from './ports/budget-ledger';
import { AccountingLedger, ParallelAccountingLedger } from './ports/accounting-ledger';
import { CostLedger } from './ports/cost-ledger';
import { ScopeRateLimitRepository } from './ports/scope-rate-limit.repository';
import { VirtualKeyRepository } from './ports/virtual-key.repository';
import { ActiveStorage, openActiveStorage } from './active-storage';
import { ChangeFeed } from './ports/change-feed';
import { JobLock } from './ports/job-lock';
import { StorageController } from './storage.controller';
import { ConfigurableModuleClass, STORAGE_MODULE_OPTIONS, StorageModuleOptions } from './storage.module-definition';

@Injectable()
class StorageLifecycle implements OnApplicationShutdown {
  constructor(private readonly storage: ActiveStorage) {}

  async onApplicationShutdown(): Promise<void> {
    await this.storage.backend.close();
  }
}

const port = <T>(token: abstract new (...args: never[]) => T, pick: (s: ActiveStorage) => T) => ({
  provide: token,
  useFactory: pick,
  inject: [ActiveStorage],
});

/**
 * Picks ONE backend at bootstrap (`StorageModule.forRootAsync`) and binds every storage port to it.
 * Selecting at run time (with fallback) is why the adapters open their own DataSource/connection
 * rather than using the static TypeOrmModule/MongooseModule/RedisModule.
 */
@Global()
@Module({
  controllers: [StorageController],
  providers: [
    {
      provide: ActiveStorage,
      useFactory: (o: StorageModuleOptions) => openActiveStorage(o.selection, o.options),
      inject: [STORAGE_MODULE_OPTIONS],
    },
    StorageLifecycle,
    port(VirtualKeyRepository, (s) => s.backend.keys),
    port(BudgetLedger, (s) => s.backend.budgets),
    port(CostLedger, (s) => s.backend.costs),
    port(AccountingLedger, (s) => s.backend.accounting ?? new ParallelAccountingLedger(s.backend.budgets, s.backend.costs)),
    port(AuditLogRepository, (s) => s.backend.audit),
    port(ScopeRateLimitRepository, (s) => s.backend.rateLimits),
    port(ChangeFeed, (s) => s.backend.changes),
    port(JobLock, (s) => s.backend.locks),
  ],
  exports: [
    ActiveStorage,
    VirtualKeyRepository,
    BudgetLedger,
    CostLedger,
    AccountingLedger,
    AuditLogRepository,
    ScopeRateLimitRepository,
    ChangeFeed,
    JobLock,
  ],
})
export class StorageModule extends ConfigurableModuleClass {}
