import { Module } from '@nestjs/common';
import { AuditRetentionJob } from './audit-retention.job';
import { AuditController } from './audit.controller';
import { AuditService } from './audit.service';
import { AuditExportService } from './export/audit-export.service';

/**
 * The audit trail: the batched writer other features record through (AuditService), the admin query
 * and export routes, and the retention job. The storage port, JobLock, metrics and the scheduler come
 * from global modules.
 */
@Module({
  controllers: [AuditController],
  providers: [AuditService, AuditExportService, AuditRetentionJob],
  exports: [AuditService],
})
export class AuditModule {}
