import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintToNumber } from './columns';

/** One scope of one ledger; `kind` keeps the token and cost ledgers apart in one table. */
@Entity({ name: 'ledger_scopes' })
export class LedgerScopeEntity {
  @PrimaryColumn({ type: 'text' })
  kind: string;

  @PrimaryColumn({ type: 'text' })
  scope: string;

  @Column({ name: 'limit_value', type: 'bigint', nullable: true, transformer: bigintToNumber })
  limitValue: number | null;

  @Column({ type: 'bigint', transformer: bigintToNumber })
  spent: number;

  @Column({ type: 'bigint', transformer: bigintToNumber })
  reserved: number;

  @Column({ name: 'period_ms', type: 'bigint', nullable: true, transformer: bigintToNumber })
  periodMs: number | null;

  @Column({ name: 'window_start', type: 'bigint', transformer: bigintToNumber })
  windowStart: number;

  @Column({ name: 'updated_at', type: 'bigint', transformer: bigintToNumber })
  updatedAt: number;
}
