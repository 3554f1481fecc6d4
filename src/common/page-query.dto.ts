import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString } from 'class-validator';
import { IsIntegerIn, QueryInteger } from './numeric-limits';

/** Largest page an admin list returns. */
export const MAX_PAGE_SIZE = 1000;

/** `limit` + `cursor` of every admin list (`{items, next_cursor}`); list query DTOs extend it. */
export class PageQueryDto {
  @ApiPropertyOptional({ example: 100, minimum: 1, maximum: MAX_PAGE_SIZE, default: 100 })
  @IsOptional()
  @QueryInteger()
  @IsIntegerIn(1, MAX_PAGE_SIZE, { message: `limit must be an integer from 1 to ${MAX_PAGE_SIZE}` })
  limit?: number;

  @ApiPropertyOptional({ description: 'next_cursor of the previous page' })
  @IsOptional()
  @IsString()
  cursor?: string;
}
