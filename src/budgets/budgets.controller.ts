import { Body, Controller, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { Actor } from '../admin/admin-actor.decorator';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AdminApi, AdminErrors } from '../admin/admin-errors.decorator';
import { BudgetsService } from './budgets.service';
import { BudgetScopePageView, BudgetScopeView, ListScopesQueryDto, PutBudgetDto } from './dto/scope-limit.dto';
import { ScopeView } from './scope-limits';
import { SCOPE_PARAM, ScopePage, pageOf } from './scope-params';

@ApiTags('budgets')
@AdminApi()
@Controller('admin/budgets')
export class BudgetsController {
  constructor(private readonly budgets: BudgetsService) {}

  @Get()
  @ApiOperation({ summary: 'List token budgets by scope (type/prefix filters, cursor paging by scope)' })
  @ApiOkResponse({ type: BudgetScopePageView })
  @AdminErrors(400)
  list(@Query() query: ListScopesQueryDto): Promise<ScopePage> {
    return pageOf(query, (limit, cursor) => this.budgets.limits.list(query.type, query.prefix, limit, cursor));
  }

  @Get(':scope')
  @ApiOperation({ summary: "One scope's token limit, spend and reservations" })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: BudgetScopeView })
  @AdminErrors(400)
  get(@Param('scope') scope: string): Promise<ScopeView> {
    return this.budgets.limits.get(scope);
  }

  @Put(':scope')
  @ApiOperation({ summary: "Set a scope's token limit (and optional reset_every window); spend is kept" })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: BudgetScopeView })
  @AdminErrors(400, 403)
  set(@Param('scope') scope: string, @Body() dto: PutBudgetDto, @Actor() actor: AdminActor): Promise<ScopeView> {
    return this.budgets.limits.set(scope, dto.limit_tokens, dto.reset_every, actor);
  }

  @Post(':scope/reset')
  @HttpCode(200)
  @ApiOperation({ summary: "Zero a scope's token spend (reservations in flight stay)" })
  @ApiParam(SCOPE_PARAM)
  @ApiOkResponse({ type: BudgetScopeView })
  @AdminErrors(400, 403)
  reset(@Param('scope') scope: string, @Actor() actor: AdminActor): Promise<ScopeView> {
    return this.budgets.limits.reset(scope, actor);
  }
}
