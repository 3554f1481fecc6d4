import { DynamicModule, Global, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service';
import { ActiveStorage, StorageInfo, selectStorage } from './active-storage';
import { STORAGE_BACKEND, StorageSettings, backendWiring } from './backend-wiring';
import { guardedPort } from './guarded-port';
import { AccountingLedger, ParallelAccountingLedger } from './ports/accounting-ledger';
import { AuditLogRepository } from './ports/audit-log.repository';
import { BudgetLedger } from './ports/budget-ledger';
import { ChangeFeed } from './ports/change-feed';
import { CostLedger } from './ports/cost-ledger';
import { JobLock } from './ports/job-lock';
import { RateLimiterStore } from './ports/rate-limiter-store';
import { ResponseCacheStore } from './ports/response-cache-store';
import { ScopeRateLimitRepository } from './ports/scope-rate-limit.repository';
import { StorageBackend } from './ports/storage-backend';
import { VirtualKeyRepository } from './ports/virtual-key.repository';
import { StorageSelectionInput } from './storage-selection';
import { StorageController } from './storage.controller';

/** Closes the backend and the stores bound next to it when the application stops. */
@Injectable()
class StorageLifecycle implements OnApplicationShutdown {
  constructor(
    private readonly storage: ActiveStorage,
    private readonly limiter: RateLimiterStore,
    @Inject(ResponseCacheStore) private readonly cache: ResponseCacheStore | null,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([this.limiter.close(), this.cache?.close()]);
    await this.storage.backend.close();
  }
}

/**
 * A port bound to the active backend, guarded (guarded-port.ts): a store failure is a
 * StorageUnavailableError (503), logged and counted, whatever the backend. The accounting ledger is
 * bound as it is: it is on every request's path, and AccountingService maps its failures itself.
 */
const port = <T extends object>(token: abstract new (...args: never[]) => T, name: string, pick: (s: ActiveStorage) => T) => ({
  provide: token,
  useFactory: (storage: ActiveStorage, metrics: MetricsService) =>
    guardedPort(pick(storage), name, (operation, error) => {
      metrics.storageErrors.inc({ operation });
      logger.error(`${operation} failed: ${error instanceof Error ? error.message : String(error)}`);
    }),
  inject: [ActiveStorage, MetricsService],
});
const logger = new Logger('Storage');

const PORTS = [VirtualKeyRepository, BudgetLedger, CostLedger, AccountingLedger, AuditLogRepository, ScopeRateLimitRepository, ChangeFeed, JobLock];

/**
 * Storage for the whole application (global): exactly one backend, chosen at bootstrap.
 * `forRootAsync` probes the candidates in priority order with fallback (`selectStorage`: the pure
 * `storageCandidates` order, each probe connecting and migrating, failures logged), then imports the
 * Nest module of the one that opened, wired with its connection (backend-wiring.ts), and binds every
 * port to it: keys, ledgers, audit, scope rate limits, change feed, job lock, the rate-limiter store and
 * the shared response cache. Features see ports only.
 */
@Global()
@Module({})
export class StorageModule {
  static async forRootAsync(settings: StorageSettings & { selection: StorageSelectionInput }): Promise<DynamicModule> {
    const { connection, info } = await selectStorage(settings.selection, settings.options);
    const wiring = await backendWiring(connection, settings);
    return {
      module: StorageModule,
      imports: wiring.imports,
      controllers: [StorageController],
      providers: [
        wiring.backend,
        { provide: ActiveStorage, useFactory: (backend: StorageBackend) => new ActiveStorage(backend, info as StorageInfo), inject: [STORAGE_BACKEND] },
        wiring.rateLimiter,
        wiring.responseCache,
        StorageLifecycle,
        port(VirtualKeyRepository, 'keys', (s) => s.backend.keys),
        port(BudgetLedger, 'budgets', (s) => s.backend.budgets),
        port(CostLedger, 'costs', (s) => s.backend.costs),
        {
          provide: AccountingLedger,
          useFactory: (s: ActiveStorage) => s.backend.accounting ?? new ParallelAccountingLedger(s.backend.budgets, s.backend.costs),
          inject: [ActiveStorage],
        },
        port(AuditLogRepository, 'audit', (s) => s.backend.audit),
        port(ScopeRateLimitRepository, 'rate_limits', (s) => s.backend.rateLimits),
        port(ChangeFeed, 'changes', (s) => s.backend.changes),
        port(JobLock, 'locks', (s) => s.backend.locks),
      ],
      exports: [ActiveStorage, RateLimiterStore, ResponseCacheStore, ...PORTS],
    };
  }
}
