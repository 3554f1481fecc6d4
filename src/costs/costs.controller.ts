import { Body, Controller, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { Actor } from '../admin/admin-actor.decorator';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AdminApi, AdminErrors } from '../admin/admin-errors.decorator';
import { CostScopePageView, CostScopeView, ListScopesQueryDto, PutCostDto } from '../budgets/dto/scope-limit.dto';
import { ScopeView } from '../budgets/scope-limits';
import { SCOPE_PARAM, ScopePage, pageOf } from '../budgets/scope-params';
import { CostsService } from './costs.service';

@ApiTags('costs')
@AdminApi()
@Controller('admin/costs')
export class CostsController {
  constructor(private readonly costs: CostsService) {}

  @Get()
  @ApiOperation({ summary: 'List cost budgets (USD micros) by scope (type/prefix filters, cursor paging by scope)' })
  @ApiOkResponse({ type: CostScopePageView })
  @AdminErrors(400)
  list(@Query() query: ListScopesQueryDto): Promise<ScopePage> {
    return pageOf(query, (limit, cursor) => this.costs.limits.list(query.type, query.prefix, limit, cursor));
  }

  @Get(':scope')
  @ApiOperation({ summary: "One scope's cost limit, spend and reservations in USD micros" })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: CostScopeView })
  @AdminErrors(400)
  get(@Param('scope') scope: string): Promise<ScopeView> {
    return this.costs.limits.get(scope);
  }

  @Put(':scope')
  @ApiOperation({ summary: "Set a scope's cost limit in USD micros (and optional reset_every window); spend is kept" })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: CostScopeView })
  @AdminErrors(400, 403)
  set(@Param('scope') scope: string, @Body() dto: PutCostDto, @Actor() actor: AdminActor): Promise<ScopeView> {
    return this.costs.limits.set(scope, dto.limit_usd_micros, dto.reset_every, actor);
  }

  @Post(':scope/reset')
  @HttpCode(200)
  @ApiOperation({ summary: "Zero a scope's cost spend (reservations in flight stay)" })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: CostScopeView })
  @AdminErrors(400, 403)
  reset(@Param('scope') scope: string, @Actor() actor: AdminActor): Promise<ScopeView> {
    return this.costs.limits.reset(scope, actor);
  }
}
