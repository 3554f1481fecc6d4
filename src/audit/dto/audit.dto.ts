import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, Matches, MaxLength } from 'class-validator';
import { IsIntegerIn, QueryInteger } from '../../common/numeric-limits';
import { KEY_ID_FORMAT, KEY_ID_PATTERN } from '../../virtual-keys/domain/virtual-key';
import { EXPORT_FORMATS, ExportFormat } from '../export/export-format';

export const MAX_AUDIT_PAGE = 1000;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it refuses
const KIND_PATTERN = /^(?=.)[^*\s\x00-\x1f\x7f]{0,128}\*?$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it refuses
const TENANT_PATTERN = /^[^/\s\x00-\x1f\x7f]{1,128}$/;

/** Filters shared by the list and the export. Bounds are epoch milliseconds. */
export class AuditFilterQueryDto {
  @ApiPropertyOptional({ example: 1763769600000, description: 'Only rows with ts >= since (epoch ms)' })
  @IsOptional()
  @QueryInteger()
  @IsIntegerIn(0, Number.MAX_SAFE_INTEGER, { message: 'since must be epoch milliseconds (an integer >= 0)' })
  since?: number;

  @ApiPropertyOptional({ example: 1763856000000, description: 'Only rows with ts < until (epoch ms)' })
  @IsOptional()
  @QueryInteger()
  @IsIntegerIn(0, Number.MAX_SAFE_INTEGER, { message: 'until must be epoch milliseconds (an integer >= 0)' })
  until?: number;

  @ApiPropertyOptional({ example: 'admin.*', description: 'Exact kind (`proxy.blocked`), or a prefix ending in `*` (`admin.*`, `proxy*`)' })
  @IsOptional()
  @IsString({ message: 'kind must be a string' })
  @Matches(KIND_PATTERN, { message: 'kind must be a kind or a prefix ending in * (1-128 characters, no whitespace)' })
  kind?: string;

  @ApiPropertyOptional({ example: 'search-prod' })
  @IsOptional()
  @IsString({ message: 'key_id must be a string' })
  @Matches(KEY_ID_PATTERN, { message: `key_id must be ${KEY_ID_FORMAT}` })
  key_id?: string;

  @ApiPropertyOptional({ example: 'acme' })
  @IsOptional()
  @IsString({ message: 'tenant_id must be a string' })
  @Matches(TENANT_PATTERN, { message: 'tenant_id must be 1-128 characters without "/", whitespace or control characters' })
  tenant_id?: string;
}

export class ListAuditQueryDto extends AuditFilterQueryDto {
  @ApiPropertyOptional({ example: 100, minimum: 1, maximum: MAX_AUDIT_PAGE, default: 100 })
  @IsOptional()
  @QueryInteger()
  @IsIntegerIn(1, MAX_AUDIT_PAGE, { message: `limit must be an integer between 1 and ${MAX_AUDIT_PAGE}` })
  limit?: number;

  @ApiPropertyOptional({ description: 'next_cursor of the previous page' })
  @IsOptional()
  @IsString({ message: 'cursor must be a string' })
  @MaxLength(1024, { message: 'cursor is not a cursor this API returned' })
  cursor?: string;
}

export class ExportAuditQueryDto extends AuditFilterQueryDto {
  @ApiPropertyOptional({ enum: EXPORT_FORMATS, default: 'jsonl' })
  @IsOptional()
  @IsIn(EXPORT_FORMATS, { message: 'format must be jsonl or csv' })
  format?: ExportFormat;
}

export class AuditRecordView {
  @ApiProperty({ example: '0mi8x2k3qa1b2c3d4000001', description: 'Unique; sorts by creation time' }) id: string;
  @ApiProperty({ example: 1763769600000, description: 'Epoch ms' }) ts: number;
  @ApiProperty({ example: 'proxy', description: '`proxy`, `proxy.blocked`, `proxy.error`, `admin.<entity>.<action>`' }) kind: string;
  @ApiProperty({ example: '5b0c6f1e-3a1f-4d7e-9d55-0c6b1f0e2a11', nullable: true, type: String }) request_id: string | null;
  @ApiProperty({ example: 'search-prod', nullable: true, type: String }) key_id: string | null;
  @ApiProperty({ example: 'acme', nullable: true, type: String }) tenant_id: string | null;
  @ApiProperty({
    example: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-4o-mini', backend: 'openai', status: 200, latency_ms: 412 },
    description: 'Kind-specific fields (docs/audit.md); never a token, authorization header or upstream key',
  })
  payload: Record<string, unknown>;
}

export class AuditPageView {
  @ApiProperty({ type: [AuditRecordView] }) items: AuditRecordView[];
  @ApiProperty({ example: null, nullable: true, type: String }) next_cursor: string | null;
}
