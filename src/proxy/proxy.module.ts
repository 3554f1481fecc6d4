import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { BudgetsModule } from '../budgets/budgets.module';
import { CacheModule } from '../cache/cache.module';
import { RateLimitsModule } from '../rate-limits/rate-limits.module';
import { VirtualKeysModule } from '../virtual-keys/virtual-keys.module';
import { BackendRouter } from './backend-router';
import { ProxyBodyReader } from './proxy-body';
import { ProxyAccessLogListener } from './proxy-access-log.listener';
import { ProxyAuditListener } from './proxy-audit.listener';
import { ProxyEvents } from './proxy-event';
import { ProxyMetricsListener } from './proxy-metrics.listener';
import { ProxyService } from './proxy.service';
import { RealtimeProxy } from './realtime';
import { ResponseRelay } from './relay';
import { UpstreamDispatcher } from './upstream-dispatch';
import { UpstreamPools } from './upstream-pools';

@Module({
  imports: [AuditModule, BudgetsModule, CacheModule, RateLimitsModule, VirtualKeysModule],
  providers: [
    ProxyService,
    RealtimeProxy,
    ProxyBodyReader,
    BackendRouter,
    UpstreamPools,
    UpstreamDispatcher,
    ResponseRelay,
    ProxyEvents,
    ProxyAuditListener,
    ProxyMetricsListener,
    ProxyAccessLogListener,
  ],
  exports: [ProxyEvents],
})
export class ProxyModule {}
