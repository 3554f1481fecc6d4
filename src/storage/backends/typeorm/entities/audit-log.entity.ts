import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { bigintToNumber } from './columns';

/** Every index ends in (ts, id), the keyset order of query and scan, so pages need no sort. */
@Entity({ name: 'audit_log' })
@Index('ix_audit_log_ts', ['ts', 'id'])
@Index('ix_audit_log_kind_ts', ['kind', 'ts', 'id'])
@Index('ix_audit_log_key_id_ts', ['keyId', 'ts', 'id'])
@Index('ix_audit_log_tenant_id_ts', ['tenantId', 'ts', 'id'])
export class AuditLogEntity {
  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ type: 'bigint', transformer: bigintToNumber })
  ts: number;

  @Column({ type: 'text' })
  kind: string;

  @Column({ name: 'request_id', type: 'text', nullable: true })
  requestId: string | null;

  @Column({ name: 'key_id', type: 'text', nullable: true })
  keyId: string | null;

  @Column({ name: 'tenant_id', type: 'text', nullable: true })
  tenantId: string | null;

  /** A JSON object; typed `object` because typeorm's partial-entity types reject `unknown` values. */
  @Column({ type: 'simple-json' })
  payload: object;
}
