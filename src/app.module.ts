import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { AdminAuthGuard } from './admin/admin-auth.guard';
import { AppConfig } from './app-config';
import { GatewayExceptionFilter } from './common/errors/gateway-exception.filter';
import { configModule } from './config/load-config';
import { HealthModule } from './health/health.module';
import { MetricsModule } from './metrics/metrics.module';
import { ProxyModule } from './proxy/proxy.module';
import { RateLimitsModule } from './rate-limits/rate-limits.module';
import { StorageModule } from './storage/storage.module';
import { VirtualKeysModule } from './virtual-keys/virtual-keys.module';

/** Composes the features. The storage backend is chosen here, and only here. */
@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        configModule(config),
        ScheduleModule.forRoot(),
        StorageModule.forRootAsync(config.storage),
        HealthModule,
        MetricsModule,
        VirtualKeysModule,
        RateLimitsModule,
        ProxyModule,
      ],
      providers: [
        { provide: APP_GUARD, useClass: AdminAuthGuard },
        { provide: APP_FILTER, useClass: GatewayExceptionFilter },
      ],
    };
  }
}
