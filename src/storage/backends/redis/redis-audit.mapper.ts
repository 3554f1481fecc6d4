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

/**
 * The indexed fields of a stored record without parsing its payload (the retention's deletes need only
 * these, and the payload is most of the record). `,"payload":` cannot occur inside a JSON string (a
 * quote there is escaped), so its first occurrence ends the fields written before the payload.
 */
export function auditIndexFieldsFromJson(json: string): Pick<AuditRecord, 'kind' | 'keyId' | 'tenantId'> {
  const cut = json.indexOf(',"payload":');
  const doc = JSON.parse(cut === -1 ? json : `${json.slice(0, cut)}}`) as Partial<AuditRecord>;
  return { kind: doc.kind ?? '', keyId: doc.keyId ?? null, tenantId: doc.tenantId ?? null };
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
