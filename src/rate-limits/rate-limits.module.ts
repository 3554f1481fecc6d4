import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import type { ConfigType } from '@nestjs/config';
import { storageConfig } from '../storage/storage.config';
import { ActiveStorage } from '../storage/active-storage';
import { MemoryRateLimiter } from '../storage/backends/memory/memory-rate-limiter';
import { RateLimiter } from '../storage/ports/rate-limiter-store';
import { RateLimitsController } from './rate-limits.controller';
import { RateLimitsService } from './rate-limits.service';
import { RedisRateLimiter } from '../storage/backends/redis/redis-rate-limiter';

/**
 * Rate limits: the service the proxy asks (RateLimitsService), the admin routes, and the limiter —
 * shared counters in redis when the store is redis, otherwise in process (per replica). The scope
 * limits themselves live in the store (ScopeRateLimitRepository, bound by StorageModule).
 */
@Module({
  imports: [AuditModule],
  controllers: [RateLimitsController],
  providers: [
    {
      provide: RateLimiter,
      useFactory: (storage: ActiveStorage, settings: ConfigType<typeof storageConfig>): RateLimiter =>
        storage.info.backend === 'redis' ? RedisRateLimiter.open(settings.options.redis) : new MemoryRateLimiter(),
      inject: [ActiveStorage, storageConfig.KEY],
    },
    RateLimitsService,
  ],
  exports: [RateLimitsService],
})
export class RateLimitsModule {}
