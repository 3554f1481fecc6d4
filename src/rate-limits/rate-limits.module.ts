import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { RateLimitsController } from './rate-limits.controller';
import { RateLimitsService } from './rate-limits.service';

/**
 * Rate limits: the service the proxy asks (RateLimitsService) and the admin routes. The counters are a
 * storage port (RateLimiterStore: shared in redis, per replica otherwise) and the scope limits too
 * (ScopeRateLimitRepository), both bound by the StorageModule.
 */
@Module({
  imports: [AuditModule],
  controllers: [RateLimitsController],
  providers: [RateLimitsService],
  exports: [RateLimitsService],
})
export class RateLimitsModule {}
