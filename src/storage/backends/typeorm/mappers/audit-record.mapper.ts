import { AuditRecord } from '../../../../audit/domain/audit-record';
import { AuditLogEntity } from '../entities/audit-log.entity';

/** Raw insert order: (id, ts, kind, request_id, key_id, tenant_id, payload). */
export const AUDIT_COLUMNS = ['id', 'ts', 'kind', 'request_id', 'key_id', 'tenant_id', 'payload'] as const;

export function auditValues(record: AuditRecord): unknown[] {
  return [record.id, record.ts, record.kind, record.requestId, record.keyId, record.tenantId, JSON.stringify(record.payload)];
}

export function toAuditRecord(row: AuditLogEntity): AuditRecord {
  return {
    id: row.id,
    ts: row.ts,
    kind: row.kind,
    requestId: row.requestId,
    keyId: row.keyId,
    tenantId: row.tenantId,
    payload: row.payload as Record<string, unknown>,
  };
}
