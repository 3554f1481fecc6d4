import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { PageQueryDto } from '../../common/page-query.dto';
import { IsArray, IsBoolean, IsObject, IsOptional, IsString, Matches, MaxLength, MinLength, ValidateBy, ValidateNested } from 'class-validator';
import { IsIntegerIn, MAX_CACHE_TTL_SECS, MAX_EPOCH_MS, MAX_LIMIT, MAX_RATE_LIMIT } from '../../common/numeric-limits';
import { KEY_ID_FORMAT, KEY_ID_PATTERN } from '../domain/virtual-key';
import { MAX_ROUTE_PATTERNS, routePatternsProblems } from '../domain/route-glob';

const ID_MESSAGE = `must be ${KEY_ID_FORMAT}`;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it refuses
const SCOPE_PART = /^[^/\s\x00-\x1f\x7f]{1,128}$/;
const SCOPE_MESSAGE = 'must be 1-128 characters without "/", whitespace or control characters';

/** `allowed_routes`: an array of valid route globs (domain/route-glob.ts), each problem named. */
function IsRoutePatterns(): PropertyDecorator {
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((p) => typeof p === 'string');
  return ValidateBy({
    name: 'isRoutePatterns',
    validator: {
      validate: (v: unknown) => strings(v) && routePatternsProblems(v).length === 0,
      defaultMessage: (args) =>
        strings(args?.value) ? `allowed_routes: ${routePatternsProblems(args.value).join('; ')}` : 'allowed_routes must be an array of strings',
    },
  });
}

export class KeyLimitsDto {
  @ApiPropertyOptional({ example: 60, nullable: true, minimum: 1, maximum: MAX_RATE_LIMIT, description: 'Requests per minute; null = unlimited' })
  @IsOptional()
  @IsIntegerIn(1, MAX_RATE_LIMIT)
  rpm?: number | null;

  @ApiPropertyOptional({ example: 100000, nullable: true, minimum: 1, maximum: MAX_RATE_LIMIT, description: 'Tokens per minute; null = unlimited' })
  @IsOptional()
  @IsIntegerIn(1, MAX_RATE_LIMIT)
  tpm?: number | null;
}

export class KeyCacheDto {
  @ApiPropertyOptional({
    example: 3600,
    nullable: true,
    minimum: 0,
    maximum: MAX_CACHE_TTL_SECS,
    description: 'Response cache TTL in seconds; 0 = no caching for this key; null = the global PROXY_CACHE_TTL_SECS',
  })
  @IsOptional()
  @IsIntegerIn(0, MAX_CACHE_TTL_SECS)
  ttl_secs?: number | null;
}

export class KeyBudgetDto {
  @ApiPropertyOptional({ example: 1000000, nullable: true, minimum: 0, maximum: MAX_LIMIT, description: 'Lifetime token budget; null = unlimited' })
  @IsOptional()
  @IsIntegerIn(0, MAX_LIMIT)
  total_tokens?: number | null;

  @ApiPropertyOptional({ example: 5000000, nullable: true, minimum: 0, maximum: MAX_LIMIT, description: 'Cost budget in USD micros (5000000 = $5); null = unlimited' })
  @IsOptional()
  @IsIntegerIn(0, MAX_LIMIT)
  total_usd_micros?: number | null;
}

/** Fields a key has that can be set on create and changed with PATCH. */
export class UpdateVirtualKeyDto {
  @ApiPropertyOptional({ example: 'search team, production', nullable: true })
  @IsOptional()
  @IsString()
  @MaxLength(256)
  name?: string | null;

  @ApiPropertyOptional({ example: true })
  @IsOptional()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({ example: 1893456000000, nullable: true, minimum: 0, maximum: MAX_EPOCH_MS, description: 'Epoch ms after which the key stops working; null = never' })
  @IsOptional()
  @IsIntegerIn(0, MAX_EPOCH_MS)
  expires_at?: number | null;

  @ApiPropertyOptional({ example: 'acme', nullable: true })
  @IsOptional()
  @IsString()
  @Matches(SCOPE_PART, { message: `tenant_id ${SCOPE_MESSAGE}` })
  tenant_id?: string | null;

  @ApiPropertyOptional({ example: 'web', nullable: true })
  @IsOptional()
  @IsString()
  @Matches(SCOPE_PART, { message: `project_id ${SCOPE_MESSAGE}` })
  project_id?: string | null;

  @ApiPropertyOptional({ example: 'alice', nullable: true })
  @IsOptional()
  @IsString()
  @Matches(SCOPE_PART, { message: `user_id ${SCOPE_MESSAGE}` })
  user_id?: string | null;

  @ApiPropertyOptional({ example: ['gpt-4o-mini', 'claude-*'], description: 'Allowed models; trailing * = prefix; empty = all' })
  @IsOptional()
  @IsArray()
  @IsString({ each: true })
  @MinLength(1, { each: true })
  models?: string[];

  @ApiPropertyOptional({
    example: ['/v1/chat/completions', '/v1/audio/*', '/v1/batches/**'],
    maxItems: MAX_ROUTE_PATTERNS,
    description:
      'Routes this key may call: globs over the canonical path (`*` within one segment, `**` a whole segment = any number of segments); empty = every route. ' +
      'Batch creation needs a pattern matching /v1/batches when the key has a model allow-list or a budget.',
  })
  @IsOptional()
  @IsRoutePatterns()
  allowed_routes?: string[];

  @ApiPropertyOptional({ type: KeyLimitsDto })
  @IsOptional()
  @ValidateNested()
  @Type(() => KeyLimitsDto)
  limits?: KeyLimitsDto;

  @ApiPropertyOptional({ type: KeyCacheDto })
  @IsOptional()
  @ValidateNested()
  @Type(() => KeyCacheDto)
  cache?: KeyCacheDto;

  @ApiPropertyOptional({ type: KeyBudgetDto })
  @IsOptional()
  @ValidateNested()
  @Type(() => KeyBudgetDto)
  budget?: KeyBudgetDto;

  @ApiPropertyOptional({ example: 'openai', nullable: true, description: 'Pin the key to one backend' })
  @IsOptional()
  @IsString()
  @Matches(/^[A-Za-z0-9_.:-]{1,64}$/, { message: 'route must be a backend name' })
  route?: string | null;

  @ApiPropertyOptional({ example: { team: 'search' }, description: 'Free-form JSON object (at most 16 KiB)' })
  @IsOptional()
  @IsObject()
  metadata?: Record<string, unknown>;
}

export class CreateVirtualKeyDto extends UpdateVirtualKeyDto {
  @ApiPropertyOptional({ example: 'search-prod', description: 'Generated when absent' })
  @IsOptional()
  @IsString()
  @Matches(KEY_ID_PATTERN, { message: `id ${ID_MESSAGE}` })
  id?: string;

  @ApiPropertyOptional({ description: 'Import an existing token (>= 20 characters); generated when absent', example: 'sk-ditto-imported0123456789abcdef' })
  @IsOptional()
  @IsString()
  @MinLength(20)
  @MaxLength(256)
  @Matches(/^[\x21-\x7e]+$/, { message: 'token must be printable ASCII without spaces' })
  token?: string;
}

export class ListVirtualKeysQueryDto extends PageQueryDto {
  @ApiPropertyOptional() @IsOptional() @IsString() tenant_id?: string;
  @ApiPropertyOptional() @IsOptional() @IsString() project_id?: string;
  @ApiPropertyOptional() @IsOptional() @IsString() user_id?: string;

  @ApiPropertyOptional({ enum: ['true', 'false'] })
  @IsOptional()
  @Matches(/^(true|false)$/, { message: 'enabled must be true or false' })
  enabled?: string;
}

export class VirtualKeyLimitsView {
  @ApiProperty({ example: 60, nullable: true, type: Number }) rpm: number | null;
  @ApiProperty({ example: null, nullable: true, type: Number }) tpm: number | null;
}

export class VirtualKeyCacheView {
  @ApiProperty({ example: null, nullable: true, type: Number, description: '0 = off; null = the global PROXY_CACHE_TTL_SECS' })
  ttl_secs: number | null;
}

export class VirtualKeyBudgetView {
  @ApiProperty({ example: 1000000, nullable: true, type: Number }) total_tokens: number | null;
  @ApiProperty({ example: null, nullable: true, type: Number }) total_usd_micros: number | null;
}

/** A key as the admin API shows it: never the token, only its prefix. */
export class VirtualKeyView {
  @ApiProperty({ example: 'search-prod' }) id: string;
  @ApiProperty({ example: 'search team', nullable: true, type: String }) name: string | null;
  @ApiProperty({ example: 'sk-ditto-AbCd' }) token_prefix: string;
  @ApiProperty({ example: true }) enabled: boolean;
  @ApiProperty({ example: null, nullable: true, type: Number }) expires_at: number | null;
  @ApiProperty({ example: 'acme', nullable: true, type: String }) tenant_id: string | null;
  @ApiProperty({ example: 'web', nullable: true, type: String }) project_id: string | null;
  @ApiProperty({ example: null, nullable: true, type: String }) user_id: string | null;
  @ApiProperty({ example: ['gpt-4o-mini'], type: [String] }) models: string[];
  @ApiProperty({ example: ['/v1/chat/completions'], type: [String], description: 'empty = every route' }) allowed_routes: string[];
  @ApiProperty({ type: VirtualKeyLimitsView }) limits: VirtualKeyLimitsView;
  @ApiProperty({ type: VirtualKeyCacheView }) cache: VirtualKeyCacheView;
  @ApiProperty({ type: VirtualKeyBudgetView }) budget: VirtualKeyBudgetView;
  @ApiProperty({ example: null, nullable: true, type: String }) route: string | null;
  @ApiProperty({ example: { team: 'search' } }) metadata: Record<string, unknown>;
  @ApiProperty({ example: 1763769600000 }) created_at: number;
  @ApiProperty({ example: 1763769600000 }) updated_at: number;
}

/** Create and rotate answers: the key plus its token, shown this once. */
export class VirtualKeyWithTokenView extends VirtualKeyView {
  @ApiProperty({ example: 'sk-ditto-3hT0kq9XvB2m4Lr8Wn1cZs6Yd5Pa7Ue0Gf2Hj4Kx', description: 'Shown only in this response' })
  token: string;
}

export class VirtualKeyPageView {
  @ApiProperty({ type: [VirtualKeyView] }) items: VirtualKeyView[];
  @ApiProperty({ example: null, nullable: true, type: String }) next_cursor: string | null;
}
