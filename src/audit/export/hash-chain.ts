import { sha256Hex } from '../../common/sha256';
import { AuditRecord } from '../domain/audit-record';

/** `prev_hash` of the first row of every export. */
export const GENESIS_HASH = '0'.repeat(64);

/** An audit row as exported (and as GET /admin/audit shows it): snake_case, without the chain. */
export interface AuditRowView {
  id: string;
  ts: number;
  kind: string;
  request_id: string | null;
  key_id: string | null;
  tenant_id: string | null;
  payload: Record<string, unknown>;
}

/** An exported row: the row plus its link in the hash chain. */
export interface ChainedRow extends AuditRowView {
  prev_hash: string;
  hash: string;
}

export function toRowView(record: AuditRecord): AuditRowView {
  return {
    id: record.id,
    ts: record.ts,
    kind: record.kind,
    request_id: record.requestId,
    key_id: record.keyId,
    tenant_id: record.tenantId,
    payload: record.payload,
  };
}

/**
 * Canonical JSON (RFC 8785, JCS, for the values JSON can hold): no whitespace, object members sorted
 * by their names' UTF-16 code units, strings and numbers written as ECMAScript's JSON.stringify writes
 * them. Two serializations of the same row (the JSONL line, the CSV record with its payload cell)
 * therefore hash alike. Members whose value is `undefined` are left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    // Strings, numbers (non-finite become null, as in JSON) and booleans; undefined at the top is null.
    return JSON.stringify(value) ?? 'null';
  }
  // Plain loops and string appends: this runs for every exported row.
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      out += value[i] === undefined ? 'null' : canonicalJson(value[i]);
    }
    return out + ']';
  }
  const names = Object.keys(value);
  if (names.length > 1) names.sort();
  let out = '{';
  for (const name of names) {
    const member = (value as Record<string, unknown>)[name];
    if (member === undefined) continue;
    if (out.length > 1) out += ',';
    out += JSON.stringify(name) + ':' + canonicalJson(member);
  }
  return out + '}';
}

/**
 * canonicalJson of the row's seven fields, built directly (this runs once per exported row): the
 * members in sorted order are id, key_id, kind, payload, request_id, tenant_id, ts.
 * `payloadJson` is canonicalJson(row.payload), when the caller has it already.
 */
export function canonicalRow(row: AuditRowView, payloadJson = canonicalJson(row.payload)): string {
  return (
    `{"id":${JSON.stringify(row.id)},"key_id":${nullable(row.key_id)},"kind":${JSON.stringify(row.kind)},` +
    `"payload":${payloadJson},"request_id":${nullable(row.request_id)},"tenant_id":${nullable(row.tenant_id)},"ts":${JSON.stringify(row.ts)}}`
  );
}

function nullable(value: string | null): string {
  return value === null ? 'null' : JSON.stringify(value);
}

/** `hash` of a row: lower-case hex SHA-256 over the UTF-8 bytes of `prev_hash` + canonicalJson(row). */
export function chainHash(prevHash: string, row: AuditRowView, payloadJson?: string): string {
  return sha256Hex(prevHash + canonicalRow(row, payloadJson));
}

/** Links rows into the chain in the order they are given (an export's order: oldest first). */
export class HashChain {
  private last = GENESIS_HASH;
  rows = 0;

  get lastHash(): string {
    return this.last;
  }

  /** The row's link: its prev_hash and hash. `payloadJson`: canonicalJson(row.payload), if at hand. */
  link(row: AuditRowView, payloadJson?: string): { prev_hash: string; hash: string } {
    const prev = this.last;
    this.last = chainHash(prev, row, payloadJson);
    this.rows++;
    return { prev_hash: prev, hash: this.last };
  }
}
