import { AuditRecord } from '../../../audit/domain/audit-record';

/** Largest ts that fits the 13 digits of an index member (year 2286). */
const MAX_TS = 9_999_999_999_999;

/** `<13-digit ts>` : fixed width, so lexicographic order of index members is (ts, id) order. */
export function tsPrefix(ts: number): string {
  return String(Math.min(MAX_TS, Math.max(0, Math.floor(ts)))).padStart(13, '0');
}

export function indexMember(record: Pick<AuditRecord, 'ts' | 'id'>): string {
  return `${tsPrefix(record.ts)}:${record.id}`;
}

export function idOfMember(member: string): string {
  return member.slice(14);
}

export function auditRecordToJson(r: AuditRecord): string {
  return JSON.stringify({
    id: r.id,
    ts: r.ts,
    kind: r.kind,
    requestId: r.requestId,
    keyId: r.keyId,
    tenantId: r.tenantId,
    payload: r.payload,
  });
}

export function auditRecordFromJson(json: string): AuditRecord {
  const doc = JSON.parse(json) as AuditRecord;
  return {
    id: doc.id,
    ts: doc.ts,
    kind: doc.kind,
    requestId: doc.requestId ?? null,
    keyId: doc.keyId ?? null,
    tenantId: doc.tenantId ?? null,
    payload: doc.payload ?? {},
  };
}
