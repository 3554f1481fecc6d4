import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Actor } from '../admin/admin-actor.decorator';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AdminApi, AdminErrors, OpenAiErrorResponse } from '../admin/admin-errors.decorator';
import { AuditService } from '../audit/audit.service';
import { PurgeCacheDto, PurgeCacheView } from './dto/purge-cache.dto';
import { ResponseCacheService } from './response-cache.service';

@ApiTags('proxy-cache')
@AdminApi()
@Controller('admin/proxy-cache')
export class CacheController {
  constructor(
    private readonly cache: ResponseCacheService,
    private readonly audit: AuditService,
  ) {}

  @Post('purge')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Remove cached proxy responses: all, or those of one key id and/or one model',
    description:
      'Both fields absent purges everything; both present, the entries matching both. Every replica drops its ' +
      'in-process entries within the change feed delay; `purged` counts what this replica and the shared cache removed.',
  })
  @ApiBody({ type: PurgeCacheDto, required: false })
  @ApiOkResponse({ type: PurgeCacheView })
  @AdminErrors(400, 403)
  @ApiResponse({ status: 503, description: 'storage_unavailable: the shared cache or the change feed could not be reached; retry', type: OpenAiErrorResponse })
  async purge(@Body() dto: PurgeCacheDto, @Actor() actor: AdminActor): Promise<PurgeCacheView> {
    const purged = await this.cache.purge({ keyId: dto.key_id, model: dto.model });
    await this.audit.recordNow({
      kind: 'admin.proxy_cache.purge',
      keyId: dto.key_id ?? null,
      payload: { actor, key_id: dto.key_id ?? null, model: dto.model ?? null, purged },
    });
    return { purged };
  }
}
