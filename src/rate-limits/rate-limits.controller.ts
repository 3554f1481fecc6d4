import { Body, Controller, Delete, Get, HttpCode, Param, Put, Query } from '@nestjs/common';
import { ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { Actor } from '../admin/admin-actor.decorator';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AdminApi, AdminErrors } from '../admin/admin-errors.decorator';
import { SCOPE_PARAM } from '../ledger/scope-params';
import { PageQueryDto } from '../common/page-query.dto';
import { PutRateLimitDto, RateLimitPageView, RateLimitView, toRateLimitView } from './dto/rate-limit.dto';
import { RateLimitsService } from './rate-limits.service';

@ApiTags('rate limits')
@AdminApi()
@Controller('admin/limits')
export class RateLimitsController {
  constructor(private readonly limits: RateLimitsService) {}

  @Get()
  @ApiOperation({ summary: 'List the scopes with rate limits (cursor paging by scope); keys’ own limits are on the keys' })
  @ApiOkResponse({ type: RateLimitPageView })
  @AdminErrors(400)
  async list(@Query() query: PageQueryDto): Promise<RateLimitPageView> {
    const page = await this.limits.list(query.limit ?? 100, query.cursor ?? null);
    return { items: page.items.map(toRateLimitView), next_cursor: page.nextCursor };
  }

  @Get(':scope')
  @ApiOperation({ summary: "One scope's requests- and tokens-per-minute limits" })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: RateLimitView })
  @AdminErrors(400)
  async get(@Param('scope') scope: string): Promise<RateLimitView> {
    return toRateLimitView(await this.limits.get(scope));
  }

  @Put(':scope')
  @ApiOperation({
    summary: "Set a scope's rpm and/or tpm (replaces both; every replica applies it within the change feed's delay)",
    description:
      'Counted over a sliding 60 s window, on every request of the keys in the scope. Shared by all replicas on redis; ' +
      'on the other stores each replica counts in process, so N replicas admit up to N × the limit.',
  })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: RateLimitView })
  @AdminErrors(400, 403)
  async set(@Param('scope') scope: string, @Body() dto: PutRateLimitDto, @Actor() actor: AdminActor): Promise<RateLimitView> {
    return toRateLimitView(await this.limits.set(scope, dto, actor));
  }

  @Delete(':scope')
  @HttpCode(204)
  @ApiOperation({ summary: "Remove a scope's rate limits" })
  @ApiParam(SCOPE_PARAM)
  @ApiNoContentResponse({ description: 'Removed' })
  @AdminErrors(400, 403)
  async remove(@Param('scope') scope: string, @Actor() actor: AdminActor): Promise<void> {
    await this.limits.remove(scope, actor);
  }
}
