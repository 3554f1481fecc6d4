import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional } from 'class-validator';
import { IsIntegerIn } from '../../common/numeric-limits';
import { MAX_RATE_LIMIT } from '../../common/numeric-limits';
import { ScopeRateLimit } from '../../storage/ports/scope-rate-limit.repository';

export class PutRateLimitDto {
  @ApiPropertyOptional({ example: 600, nullable: true, type: Number, minimum: 1, maximum: MAX_RATE_LIMIT, description: 'Requests per minute; null or omitted = no request limit' })
  @IsOptional()
  @IsIntegerIn(1, MAX_RATE_LIMIT)
  rpm?: number | null;

  @ApiPropertyOptional({ example: 200000, nullable: true, type: Number, minimum: 1, maximum: MAX_RATE_LIMIT, description: 'Tokens per minute (prompt + output); null or omitted = no token limit' })
  @IsOptional()
  @IsIntegerIn(1, MAX_RATE_LIMIT)
  tpm?: number | null;
}

export class RateLimitView {
  @ApiProperty({ example: 'tenant:acme' }) scope: string;
  @ApiProperty({ example: 600, nullable: true, type: Number }) rpm: number | null;
  @ApiProperty({ example: 200000, nullable: true, type: Number }) tpm: number | null;
  @ApiProperty({ example: 1764600000000, description: 'Epoch ms' }) updated_at: number;
}

export class RateLimitPageView {
  @ApiProperty({ type: [RateLimitView] }) items: RateLimitView[];
  @ApiProperty({ nullable: true, type: String }) next_cursor: string | null;
}

export function toRateLimitView(limit: ScopeRateLimit): RateLimitView {
  return { scope: limit.scope, rpm: limit.rpm, tpm: limit.tpm, updated_at: limit.updatedAt };
}
