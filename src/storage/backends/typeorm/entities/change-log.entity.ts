import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { bigintToNumber } from './columns';

/** SQLite change feed: replicas poll for rows with a higher `seq` (AUTOINCREMENT never reuses one). */
@Entity({ name: 'change_log' })
export class ChangeLogEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  seq: number;

  @Column({ type: 'text' })
  entity: string;

  @Column({ type: 'text' })
  id: string;

  @Column({ type: 'bigint', transformer: bigintToNumber })
  at: number;
}
