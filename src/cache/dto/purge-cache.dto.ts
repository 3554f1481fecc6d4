import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsNotEmpty, IsOptional, IsString } from 'class-validator';

export class PurgeCacheDto {
  @ApiPropertyOptional({ example: 'search-prod', description: 'Only the entries stored by this virtual key' })
  @IsOptional()
  @IsString()
  @IsNotEmpty()
  key_id?: string;

  @ApiPropertyOptional({ example: 'gpt-4o-mini', description: 'Only the entries for this model (as the client asked for it)' })
  @IsOptional()
  @IsString()
  @IsNotEmpty()
  model?: string;
}

export class PurgeCacheView {
  @ApiProperty({ example: 42, description: "Entries removed from this replica's in-process cache plus the shared (redis) cache" })
  purged: number;
}
