import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintToNumber } from './columns';

/** The rate limits set on one scope (ScopeRateLimitRepository). */
@Entity({ name: 'rate_limits' })
export class RateLimitEntity {
  @PrimaryColumn({ type: 'text' })
  scope: string;

  @Column({ type: 'bigint', nullable: true, transformer: bigintToNumber })
  rpm: number | null;

  @Column({ type: 'bigint', nullable: true, transformer: bigintToNumber })
  tpm: number | null;

  @Column({ name: 'updated_at', type: 'bigint', transformer: bigintToNumber })
  updatedAt: number;
}
