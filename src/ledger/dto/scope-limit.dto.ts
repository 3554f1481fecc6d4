import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { PageQueryDto } from '../../common/page-query.dto';
import { IsBoolean, IsIn, IsOptional, IsString, Matches, ValidateIf } from 'class-validator';
import { IsIntegerIn, MAX_AGE_SECS, MAX_LIMIT } from '../../common/numeric-limits';
import { SCOPE_TYPES, ScopeType } from '../domain/scopes';

const RESET_EVERY = /^[1-9]\d{0,4}[mhd]$/;
const RESET_EVERY_DOC = 'Periodic window: `30m`, `1h`, `1d`, `7d`, `30d` (spend returns to 0 when a new window starts); null = lifetime; omitted = unchanged';

export class ListScopesQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ enum: SCOPE_TYPES, description: 'Only scopes of this type (the tenant/project/user scopes are the aggregates of their keys)' })
  @IsOptional()
  @IsIn(SCOPE_TYPES)
  type?: ScopeType;

  @ApiPropertyOptional({ example: 'project:acme/', description: 'Only scopes starting with this' })
  @IsOptional()
  @IsString()
  prefix?: string;
}

export class PutBudgetDto {
  @ApiProperty({ example: 1000000, nullable: true, type: Number, minimum: 0, maximum: MAX_LIMIT, description: 'Token limit; null = unlimited (still metered)' })
  @ValidateIf((_, v) => v !== null)
  @IsIntegerIn(0, MAX_LIMIT)
  limit_tokens: number | null;

  @ApiPropertyOptional({ example: '30d', nullable: true, type: String, description: RESET_EVERY_DOC })
  @IsOptional()
  @Matches(RESET_EVERY, { message: 'reset_every must look like 30m, 1h, 1d, 7d or 30d' })
  reset_every?: string | null;
}

export class PutCostDto {
  @ApiProperty({ example: 5000000, nullable: true, type: Number, minimum: 0, maximum: MAX_LIMIT, description: 'Cost limit in USD micros (5000000 = $5); null = unlimited (still metered)' })
  @ValidateIf((_, v) => v !== null)
  @IsIntegerIn(0, MAX_LIMIT)
  limit_usd_micros: number | null;

  @ApiPropertyOptional({ example: '30d', nullable: true, type: String, description: RESET_EVERY_DOC })
  @IsOptional()
  @Matches(RESET_EVERY, { message: 'reset_every must look like 30m, 1h, 1d, 7d or 30d' })
  reset_every?: string | null;
}

class ScopeWindowView {
  @ApiProperty({ example: 'tenant:acme' }) scope: string;
  @ApiProperty({ example: '30d', nullable: true, type: String }) reset_every: string | null;
  @ApiProperty({ example: 1764547200000, nullable: true, type: Number, description: 'Start of the current window (epoch ms)' }) window_start: number | null;
  @ApiProperty({ example: 1767139200000, nullable: true, type: Number }) window_ends_at: number | null;
  @ApiProperty({ example: 1764600000000 }) updated_at: number;
}

export class BudgetScopeView extends ScopeWindowView {
  @ApiProperty({ example: 1000000, nullable: true, type: Number }) limit_tokens: number | null;
  @ApiProperty({ example: 12345 }) spent_tokens: number;
  @ApiProperty({ example: 512, description: 'Held by requests in flight' }) reserved_tokens: number;
  @ApiProperty({ example: 987143, nullable: true, type: Number }) remaining_tokens: number | null;
}

export class CostScopeView extends ScopeWindowView {
  @ApiProperty({ example: 5000000, nullable: true, type: Number }) limit_usd_micros: number | null;
  @ApiProperty({ example: 1250 }) spent_usd_micros: number;
  @ApiProperty({ example: 30 }) reserved_usd_micros: number;
  @ApiProperty({ example: 4998720, nullable: true, type: Number }) remaining_usd_micros: number | null;
}

export class BudgetScopePageView {
  @ApiProperty({ type: [BudgetScopeView] }) items: BudgetScopeView[];
  @ApiProperty({ nullable: true, type: String }) next_cursor: string | null;
}

export class CostScopePageView {
  @ApiProperty({ type: [CostScopeView] }) items: CostScopeView[];
  @ApiProperty({ nullable: true, type: String }) next_cursor: string | null;
}

export class ReapReservationsDto {
  @ApiPropertyOptional({ example: 900, minimum: 0, maximum: MAX_AGE_SECS, description: 'Release reservations older than this; default RESERVATION_TTL_SECS' })
  @IsOptional()
  @IsIntegerIn(0, MAX_AGE_SECS)
  older_than_secs?: number;

  @ApiPropertyOptional({ example: false, description: 'List what would be released without releasing it' })
  @IsOptional()
  @IsBoolean()
  dry_run?: boolean;
}

export class ReservationView {
  @ApiProperty({ example: '5b0c…' }) id: string;
  @ApiProperty({ example: ['key:search-prod', 'tenant:acme'] }) scopes: string[];
  @ApiProperty({ example: 1200 }) amount: number;
  @ApiProperty({ example: 1764600000000 }) created_at: number;
}

export class LedgerReapView {
  @ApiProperty({ example: 2, description: 'Reservations released (or, on a dry run, that would be)' }) count: number;
  @ApiProperty({ type: [ReservationView], description: 'Dry run only: the reservations (at most 1000)' }) items: ReservationView[];
}

export class ReapResultView {
  @ApiProperty({ example: 900 }) older_than_secs: number;
  @ApiProperty({ example: false }) dry_run: boolean;
  @ApiProperty({ type: LedgerReapView, description: 'Token ledger' }) tokens: LedgerReapView;
  @ApiProperty({ type: LedgerReapView, description: 'Cost ledger (amounts in USD micros)' }) usd_micros: LedgerReapView;
}
