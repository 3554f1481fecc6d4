import { MigrationInterface, QueryRunner } from 'typeorm';
import { quoteIdentifier } from '../../typeorm-store';
import { tableNamer } from './1767225600000-initial-schema';

/**
 * The audit table partitioned by time (RANGE on `ts`), so that retention drops whole partitions
 * (docs/audit.md, "Retention"). The existing table is not copied: it is renamed to `audit_log_legacy`
 * and attached as the partition of everything before this migration (`MINVALUE` to one past its newest
 * row, or now), so every row stays where it is and the legacy partition is dropped whole once all of it
 * has expired. A `DEFAULT` partition takes rows no time partition covers (before the retention job has
 * created the partitions ahead). The key becomes (ts, id), as PostgreSQL requires of a partitioned
 * table's unique keys; ids stay unique by construction. The other indexes already end in (ts, id): the
 * legacy table's are attached as they are; only the (ts, id) key is built on it (in place of its key on id).
 */
export class PostgresAuditPartitions1767744000000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    const schema = (queryRunner.connection.options as { schema?: string }).schema ?? 'public';
    const index = (name: string) => `${quoteIdentifier(schema)}.${quoteIdentifier(name)}`;
    await queryRunner.query(`LOCK TABLE ${t('audit_log')} IN ACCESS EXCLUSIVE MODE`);
    const [{ bound }] = (await queryRunner.query(
      `SELECT greatest(coalesce(max(ts) + 1, 0), (extract(epoch from clock_timestamp()) * 1000)::bigint)::text AS bound FROM ${t('audit_log')}`,
    )) as Array<{ bound: string }>;
    const statements = [
      `ALTER TABLE ${t('audit_log')} RENAME TO "audit_log_legacy"`,
      // A partition takes its parent's key, (ts, id); ATTACH builds it.
      `ALTER TABLE ${t('audit_log_legacy')} DROP CONSTRAINT "pk_audit_log"`,
      `ALTER INDEX ${index('ix_audit_log_kind_ts')} RENAME TO "ix_audit_log_legacy_kind_ts"`,
      `ALTER INDEX ${index('ix_audit_log_key_id_ts')} RENAME TO "ix_audit_log_legacy_key_id_ts"`,
      `ALTER INDEX ${index('ix_audit_log_tenant_id_ts')} RENAME TO "ix_audit_log_legacy_tenant_id_ts"`,
      // The partitioned key (ts, id) replaces this index.
      `DROP INDEX ${index('ix_audit_log_ts')}`,
      `CREATE TABLE ${t('audit_log')} (
        "id" text COLLATE "C" NOT NULL,
        "ts" bigint NOT NULL,
        "kind" text COLLATE "C" NOT NULL,
        "request_id" text,
        "key_id" text,
        "tenant_id" text,
        "payload" text NOT NULL,
        CONSTRAINT "pk_audit_log" PRIMARY KEY ("ts", "id")
      ) PARTITION BY RANGE ("ts")`,
      `CREATE INDEX "ix_audit_log_kind_ts" ON ${t('audit_log')} ("kind", "ts", "id")`,
      `CREATE INDEX "ix_audit_log_key_id_ts" ON ${t('audit_log')} ("key_id", "ts", "id")`,
      `CREATE INDEX "ix_audit_log_tenant_id_ts" ON ${t('audit_log')} ("tenant_id", "ts", "id")`,
      // A validated CHECK lets ATTACH skip its own scan of the rows.
      `ALTER TABLE ${t('audit_log_legacy')} ADD CONSTRAINT "ck_audit_log_legacy_ts" CHECK ("ts" < ${bound})`,
      `ALTER TABLE ${t('audit_log')} ATTACH PARTITION ${t('audit_log_legacy')} FOR VALUES FROM (MINVALUE) TO (${bound})`,
      `CREATE TABLE ${t('audit_log_default')} PARTITION OF ${t('audit_log')} DEFAULT`,
    ];
    for (const sql of statements) await queryRunner.query(sql);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    await queryRunner.query(`ALTER TABLE ${t('audit_log')} RENAME TO "audit_log_partitioned"`);
    await queryRunner.query(`ALTER TABLE ${t('audit_log_partitioned')} RENAME CONSTRAINT "pk_audit_log" TO "pk_audit_log_partitioned"`);
    await queryRunner.query(
      `CREATE TABLE ${t('audit_log')} (
        "id" text COLLATE "C" NOT NULL,
        "ts" bigint NOT NULL,
        "kind" text COLLATE "C" NOT NULL,
        "request_id" text,
        "key_id" text,
        "tenant_id" text,
        "payload" text NOT NULL,
        CONSTRAINT "pk_audit_log" PRIMARY KEY ("id")
      )`,
    );
    await queryRunner.query(`INSERT INTO ${t('audit_log')} SELECT * FROM ${t('audit_log_partitioned')}`);
    await queryRunner.query(`DROP TABLE ${t('audit_log_partitioned')}`);
    for (const [name, columns] of [
      ['ix_audit_log_ts', '"ts", "id"'],
      ['ix_audit_log_kind_ts', '"kind", "ts", "id"'],
      ['ix_audit_log_key_id_ts', '"key_id", "ts", "id"'],
      ['ix_audit_log_tenant_id_ts', '"tenant_id", "ts", "id"'],
    ]) {
      await queryRunner.query(`CREATE INDEX "${name}" ON ${t('audit_log')} (${columns})`);
    }
  }
}
