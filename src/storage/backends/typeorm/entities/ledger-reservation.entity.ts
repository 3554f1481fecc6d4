import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { bigintToNumber } from './columns';

/** An outstanding reservation; settling deletes the row, which is what makes settle exactly-once. */
@Entity({ name: 'ledger_reservations' })
@Index('ix_ledger_reservations_created_at', ['kind', 'createdAt'])
export class LedgerReservationEntity {
  @PrimaryColumn({ type: 'text' })
  kind: string;

  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ type: 'simple-json' })
  scopes: string[];

  @Column({ type: 'bigint', transformer: bigintToNumber })
  amount: number;

  @Column({ name: 'created_at', type: 'bigint', transformer: bigintToNumber })
  createdAt: number;
}
