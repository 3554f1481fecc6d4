import { Controller, Get, Header, Query, StreamableFile } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { AdminApi, AdminErrors } from '../admin/admin-errors.decorator';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { decodeCursor } from '../common/page';
import { AuditLogRepository } from '../storage/ports/audit-log.repository';
import { AuditQuery } from './domain/audit-record';
import { AuditFilterQueryDto, AuditPageView, ExportAuditQueryDto, ListAuditQueryDto } from './dto/audit.dto';
import { AuditExportService } from './export/audit-export.service';
import { CONTENT_TYPES } from './export/export-format';
import { toRowView } from './export/hash-chain';

/** Cursors are opaque, but every backend's is base64url JSON of an object: refuse anything else early. */
function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function toQuery(dto: AuditFilterQueryDto): AuditQuery {
  if (dto.since !== undefined && dto.until !== undefined && dto.until <= dto.since) {
    throw new GatewayError(ErrorCode.InvalidRequest, 'until must be greater than since', 'until');
  }
  return { since: dto.since, until: dto.until, kind: dto.kind, keyId: dto.key_id, tenantId: dto.tenant_id };
}

@ApiTags('audit')
@AdminApi()
@Controller('admin/audit')
export class AuditController {
  constructor(
    private readonly repository: AuditLogRepository,
    private readonly exporter: AuditExportService,
  ) {}

  @Get()
  @ApiOperation({ summary: 'Audit events, newest first (filters, cursor paging)' })
  @ApiOkResponse({ type: AuditPageView })
  @AdminErrors(400)
  async list(@Query() dto: ListAuditQueryDto): Promise<AuditPageView> {
    const query = toQuery(dto);
    if (dto.cursor !== undefined && decodeCursor(dto.cursor, isObject) === null) {
      throw new GatewayError(ErrorCode.InvalidRequest, 'invalid cursor: pass back the next_cursor of the previous page', 'cursor');
    }
    const page = await this.repository.query(query, dto.limit ?? 100, dto.cursor ?? null);
    return { items: page.items.map(toRowView), next_cursor: page.nextCursor };
  }

  @Get('export')
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'Stream every matching event, oldest first, as JSONL or CSV with a SHA-256 hash chain',
    description:
      'Each row carries `prev_hash` and `hash` (docs/audit.md); check a file with `npm run audit:verify -- <file>`. ' +
      '`until` defaults to the moment the export starts.',
  })
  @ApiProduces(CONTENT_TYPES.jsonl, CONTENT_TYPES.csv)
  @ApiOkResponse({ description: 'The export file (attachment)' })
  @AdminErrors(400)
  async export(@Query() dto: ExportAuditQueryDto): Promise<StreamableFile> {
    const format = dto.format ?? 'jsonl';
    const startedAt = Date.now();
    // A fixed end makes the export finite under traffic, and a re-run with the same bounds repeatable.
    const query = toQuery(dto);
    query.until ??= startedAt;
    const stream = await this.exporter.open(query, format);
    const stamp = new Date(startedAt).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    return new StreamableFile(stream, {
      type: CONTENT_TYPES[format],
      disposition: `attachment; filename="ditto-audit-${stamp}.${format}"`,
    });
  }
}
