import { Body, Controller, Get, HttpCode, Inject, Param, Post, Put, Query, Type } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { Actor } from '../admin/admin-actor.decorator';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AdminApi, AdminErrors } from '../admin/admin-errors.decorator';
import { BudgetScopePageView, BudgetScopeView, CostScopePageView, CostScopeView, ListScopesQueryDto, PutBudgetDto, PutCostDto } from './dto/scope-limit.dto';
import { CostLimits, ScopeLimits, ScopeView, TokenLimits } from './scope-limits';
import { SCOPE_PARAM, ScopePage, pageOf } from './scope-params';

/** What differs between the two ledgers' admin APIs: path, unit words, DTOs and the limits they act on. */
interface LedgerApi {
  path: 'budgets' | 'costs';
  /** How the ledger is named in summaries: `token`, `cost (USD micros)`. */
  noun: string;
  limits: Type<ScopeLimits>;
  put: Type<PutBudgetDto | PutCostDto>;
  limitField: 'limit_tokens' | 'limit_usd_micros';
  view: Type;
  page: Type;
}

/**
 * `@Body()` validated as `type`: the controller below is built for two body classes, and the global
 * ValidationPipe reads a parameter's class from its design-time type, which a shared method cannot
 * name. Runs after the compiler's own metadata decorator, so it wins.
 */
function BodyOf(type: Type): ParameterDecorator {
  return (target, key, index) => {
    const types: unknown[] = Reflect.getMetadata('design:paramtypes', target, key!) ?? [];
    types[index] = type;
    Reflect.defineMetadata('design:paramtypes', types, target, key!);
    Body()(target, key, index);
  };
}

/**
 * One controller shape for both ledgers (docs/budgets.md): `/admin/budgets` on the token ledger and
 * `/admin/costs` on the cost ledger (USD micros): list, read, set a limit with an optional
 * `reset_every` window, reset spend.
 */
function ledgerController(api: LedgerApi): Type {
  @ApiTags(api.path)
  @AdminApi()
  @Controller(`admin/${api.path}`)
  class LedgerController {
    constructor(@Inject(api.limits) private readonly limits: ScopeLimits) {}

    @Get()
    @ApiOperation({ summary: `List ${api.noun} budgets by scope (type/prefix filters, cursor paging by scope)` })
    @ApiOkResponse({ type: api.page })
    @AdminErrors(400)
    list(@Query() query: ListScopesQueryDto): Promise<ScopePage> {
      return pageOf(query, (limit, cursor) => this.limits.list(query.type, query.prefix, limit, cursor));
    }

    @Get(':scope')
    @ApiOperation({ summary: `One scope's ${api.noun} limit, spend and reservations` })
    @ApiParam(SCOPE_PARAM)
    @ApiOkResponse({ type: api.view })
    @AdminErrors(400)
    get(@Param('scope') scope: string): Promise<ScopeView> {
      return this.limits.get(scope);
    }

    @Put(':scope')
    @ApiOperation({ summary: `Set a scope's ${api.noun} limit (and optional reset_every window); spend is kept` })
    @ApiParam(SCOPE_PARAM)
    @ApiBody({ type: api.put })
    @ApiOkResponse({ type: api.view })
    @AdminErrors(400, 403)
    set(@Param('scope') scope: string, @BodyOf(api.put) dto: PutBudgetDto & PutCostDto, @Actor() actor: AdminActor): Promise<ScopeView> {
      return this.limits.set(scope, dto[api.limitField], dto.reset_every, actor);
    }

    @Post(':scope/reset')
    @HttpCode(200)
    @ApiOperation({ summary: `Zero a scope's ${api.noun} spend (reservations in flight stay)` })
    @ApiParam(SCOPE_PARAM)
    @ApiOkResponse({ type: api.view })
    @AdminErrors(400, 403)
    reset(@Param('scope') scope: string, @Actor() actor: AdminActor): Promise<ScopeView> {
      return this.limits.reset(scope, actor);
    }
  }
  // The class name names the routes in logs and the OpenAPI operation ids: one per ledger.
  Object.defineProperty(LedgerController, 'name', { value: `${api.path[0].toUpperCase()}${api.path.slice(1)}Controller` });
  return LedgerController;
}

export const BudgetsController = ledgerController({
  path: 'budgets',
  noun: 'token',
  limits: TokenLimits,
  put: PutBudgetDto,
  limitField: 'limit_tokens',
  view: BudgetScopeView,
  page: BudgetScopePageView,
});

export const CostsController = ledgerController({
  path: 'costs',
  noun: 'cost (USD micros)',
  limits: CostLimits,
  put: PutCostDto,
  limitField: 'limit_usd_micros',
  view: CostScopeView,
  page: CostScopePageView,
});
