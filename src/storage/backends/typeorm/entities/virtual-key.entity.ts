import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { bigintToNumber } from './columns';

@Entity({ name: 'virtual_keys' })
export class VirtualKeyEntity {
  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ type: 'text', nullable: true })
  name: string | null;

  @Index('uq_virtual_keys_token_hash', { unique: true })
  @Column({ name: 'token_hash', type: 'text' })
  tokenHash: string;

  @Column({ name: 'token_prefix', type: 'text' })
  tokenPrefix: string;

  @Column({ type: 'boolean' })
  enabled: boolean;

  @Column({ name: 'expires_at', type: 'bigint', nullable: true, transformer: bigintToNumber })
  expiresAt: number | null;

  @Index('ix_virtual_keys_tenant_id')
  @Column({ name: 'tenant_id', type: 'text', nullable: true })
  tenantId: string | null;

  @Index('ix_virtual_keys_project_id')
  @Column({ name: 'project_id', type: 'text', nullable: true })
  projectId: string | null;

  @Index('ix_virtual_keys_user_id')
  @Column({ name: 'user_id', type: 'text', nullable: true })
  userId: string | null;

  @Column({ type: 'simple-json' })
  models: string[];

  @Column({ name: 'allowed_routes', type: 'simple-json' })
  allowedRoutes: string[];

  @Column({ name: 'limit_rpm', type: 'bigint', nullable: true, transformer: bigintToNumber })
  limitRpm: number | null;

  @Column({ name: 'limit_tpm', type: 'bigint', nullable: true, transformer: bigintToNumber })
  limitTpm: number | null;

  @Column({ name: 'cache_ttl_secs', type: 'bigint', nullable: true, transformer: bigintToNumber })
  cacheTtlSecs: number | null;

  @Column({ name: 'budget_total_tokens', type: 'bigint', nullable: true, transformer: bigintToNumber })
  budgetTotalTokens: number | null;

  @Column({ name: 'budget_total_usd_micros', type: 'bigint', nullable: true, transformer: bigintToNumber })
  budgetTotalUsdMicros: number | null;

  @Column({ type: 'text', nullable: true })
  route: string | null;

  /** A JSON object; typed `object` because typeorm's partial-entity types reject `unknown` values. */
  @Column({ type: 'simple-json' })
  metadata: object;

  @Column({ name: 'created_at', type: 'bigint', transformer: bigintToNumber })
  createdAt: number;

  @Column({ name: 'updated_at', type: 'bigint', transformer: bigintToNumber })
  updatedAt: number;
}
