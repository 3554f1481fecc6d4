import { MigrationInterface, QueryRunner } from 'typeorm';
import { quoteIdentifier } from '../../typeorm-store';

/**
 * Full schema of an empty PostgreSQL schema (the DataSource's `schema` option). Columns that are
 * ordered or prefix-matched use COLLATE "C": byte order, the same order SQLite and JavaScript use, so
 * keyset paging and `kind` prefix ranges behave identically whatever the database locale.
 */
export class PostgresInitialSchema1767225600000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    const statements = [
      `CREATE TABLE ${t('virtual_keys')} (
        "id" text COLLATE "C" NOT NULL,
        "name" text,
        "token_hash" text NOT NULL,
        "token_prefix" text NOT NULL,
        "enabled" boolean NOT NULL,
        "expires_at" bigint,
        "tenant_id" text,
        "project_id" text,
        "user_id" text,
        "models" text NOT NULL,
        "limit_rpm" bigint,
        "limit_tpm" bigint,
        "budget_total_tokens" bigint,
        "budget_total_usd_micros" bigint,
        "route" text,
        "metadata" text NOT NULL,
        "created_at" bigint NOT NULL,
        "updated_at" bigint NOT NULL,
        CONSTRAINT "pk_virtual_keys" PRIMARY KEY ("id")
      )`,
      `CREATE UNIQUE INDEX "uq_virtual_keys_token_hash" ON ${t('virtual_keys')} ("token_hash")`,
      `CREATE INDEX "ix_virtual_keys_tenant_id" ON ${t('virtual_keys')} ("tenant_id")`,
      `CREATE INDEX "ix_virtual_keys_project_id" ON ${t('virtual_keys')} ("project_id")`,
      `CREATE INDEX "ix_virtual_keys_user_id" ON ${t('virtual_keys')} ("user_id")`,
      `CREATE TABLE ${t('ledger_scopes')} (
        "kind" text NOT NULL,
        "scope" text COLLATE "C" NOT NULL,
        "limit_value" bigint,
        "spent" bigint NOT NULL,
        "reserved" bigint NOT NULL,
        "period_ms" bigint,
        "window_start" bigint NOT NULL,
        "updated_at" bigint NOT NULL,
        CONSTRAINT "pk_ledger_scopes" PRIMARY KEY ("kind", "scope")
      )`,
      `CREATE TABLE ${t('ledger_reservations')} (
        "kind" text NOT NULL,
        "id" text NOT NULL,
        "scopes" text NOT NULL,
        "amount" bigint NOT NULL,
        "created_at" bigint NOT NULL,
        CONSTRAINT "pk_ledger_reservations" PRIMARY KEY ("kind", "id")
      )`,
      `CREATE INDEX "ix_ledger_reservations_created_at" ON ${t('ledger_reservations')} ("kind", "created_at")`,
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
      `CREATE INDEX "ix_audit_log_ts" ON ${t('audit_log')} ("ts", "id")`,
      `CREATE INDEX "ix_audit_log_kind_ts" ON ${t('audit_log')} ("kind", "ts", "id")`,
      `CREATE INDEX "ix_audit_log_key_id_ts" ON ${t('audit_log')} ("key_id", "ts", "id")`,
      `CREATE INDEX "ix_audit_log_tenant_id_ts" ON ${t('audit_log')} ("tenant_id", "ts", "id")`,
    ];
    for (const sql of statements) await queryRunner.query(sql);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    for (const table of ['audit_log', 'ledger_reservations', 'ledger_scopes', 'virtual_keys']) {
      await queryRunner.query(`DROP TABLE ${t(table)}`);
    }
  }
}

export function tableNamer(queryRunner: QueryRunner): (table: string) => string {
  const schema = (queryRunner.connection.options as { schema?: string }).schema ?? 'public';
  return (table) => `${quoteIdentifier(schema)}.${quoteIdentifier(table)}`;
}
