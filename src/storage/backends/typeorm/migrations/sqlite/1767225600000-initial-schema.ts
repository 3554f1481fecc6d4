import { MigrationInterface, QueryRunner } from 'typeorm';

/** Full schema of an empty SQLite file. Ledger tables are WITHOUT ROWID: small rows always looked up by
 * their composite key. */
export class SqliteInitialSchema1767225600000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    const statements = [
      `CREATE TABLE "virtual_keys" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "name" TEXT,
        "token_hash" TEXT NOT NULL,
        "token_prefix" TEXT NOT NULL,
        "enabled" BOOLEAN NOT NULL,
        "expires_at" INTEGER,
        "tenant_id" TEXT,
        "project_id" TEXT,
        "user_id" TEXT,
        "models" TEXT NOT NULL,
        "limit_rpm" INTEGER,
        "limit_tpm" INTEGER,
        "budget_total_tokens" INTEGER,
        "budget_total_usd_micros" INTEGER,
        "route" TEXT,
        "metadata" TEXT NOT NULL,
        "created_at" INTEGER NOT NULL,
        "updated_at" INTEGER NOT NULL
      )`,
      `CREATE UNIQUE INDEX "uq_virtual_keys_token_hash" ON "virtual_keys" ("token_hash")`,
      `CREATE INDEX "ix_virtual_keys_tenant_id" ON "virtual_keys" ("tenant_id")`,
      `CREATE INDEX "ix_virtual_keys_project_id" ON "virtual_keys" ("project_id")`,
      `CREATE INDEX "ix_virtual_keys_user_id" ON "virtual_keys" ("user_id")`,
      `CREATE TABLE "ledger_scopes" (
        "kind" TEXT NOT NULL,
        "scope" TEXT NOT NULL,
        "limit_value" INTEGER,
        "spent" INTEGER NOT NULL,
        "reserved" INTEGER NOT NULL,
        "period_ms" INTEGER,
        "window_start" INTEGER NOT NULL,
        "updated_at" INTEGER NOT NULL,
        PRIMARY KEY ("kind", "scope")
      ) WITHOUT ROWID`,
      `CREATE TABLE "ledger_reservations" (
        "kind" TEXT NOT NULL,
        "id" TEXT NOT NULL,
        "scopes" TEXT NOT NULL,
        "amount" INTEGER NOT NULL,
        "created_at" INTEGER NOT NULL,
        PRIMARY KEY ("kind", "id")
      ) WITHOUT ROWID`,
      `CREATE INDEX "ix_ledger_reservations_created_at" ON "ledger_reservations" ("kind", "created_at")`,
      `CREATE TABLE "audit_log" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "ts" INTEGER NOT NULL,
        "kind" TEXT NOT NULL,
        "request_id" TEXT,
        "key_id" TEXT,
        "tenant_id" TEXT,
        "payload" TEXT NOT NULL
      )`,
      `CREATE INDEX "ix_audit_log_ts" ON "audit_log" ("ts", "id")`,
      `CREATE INDEX "ix_audit_log_kind_ts" ON "audit_log" ("kind", "ts", "id")`,
      `CREATE INDEX "ix_audit_log_key_id_ts" ON "audit_log" ("key_id", "ts", "id")`,
      `CREATE INDEX "ix_audit_log_tenant_id_ts" ON "audit_log" ("tenant_id", "ts", "id")`,
      `CREATE TABLE "change_log" (
        "seq" INTEGER PRIMARY KEY AUTOINCREMENT,
        "entity" TEXT NOT NULL,
        "id" TEXT NOT NULL,
        "at" INTEGER NOT NULL
      )`,
      `CREATE INDEX "ix_change_log_at" ON "change_log" ("at")`,
    ];
    for (const sql of statements) await queryRunner.query(sql);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of ['change_log', 'audit_log', 'ledger_reservations', 'ledger_scopes', 'virtual_keys']) {
      await queryRunner.query(`DROP TABLE "${table}"`);
    }
  }
}
