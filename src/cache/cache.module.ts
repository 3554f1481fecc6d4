import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { CacheController } from './cache.controller';
import { RequestCache } from './request-cache';
import { ResponseCacheService } from './response-cache.service';

/**
 * The proxy response cache (ResponseCacheService; RequestCache, the proxy's stage) and its admin purge
 * route. The shared L2 is a storage port (ResponseCacheStore, or null: in-process only), bound by the
 * StorageModule; the configuration, ChangeFeed and metrics come from global modules.
 */
@Module({
  imports: [AuditModule],
  controllers: [CacheController],
  providers: [ResponseCacheService, RequestCache],
  exports: [ResponseCacheService, RequestCache],
})
export class CacheModule {}
