import { MigrationInterface, QueryRunner } from 'typeorm';
import { tableNamer } from './1767225600000-initial-schema';

/**
 * A key's response-cache TTL (NULL = the global setting, which is also what keys stored before this
 * migration read as) and the rate limits set per scope. `scope` is COLLATE "C" like the ledger's, so
 * keyset paging orders it the way SQLite and JavaScript do.
 */
export class PostgresCacheTtlAndRateLimits1767484800000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    await queryRunner.query(`ALTER TABLE ${t('virtual_keys')} ADD COLUMN "cache_ttl_secs" bigint`);
    await queryRunner.query(
      `CREATE TABLE ${t('rate_limits')} (
        "scope" text COLLATE "C" NOT NULL,
        "rpm" bigint,
        "tpm" bigint,
        "updated_at" bigint NOT NULL,
        CONSTRAINT "pk_rate_limits" PRIMARY KEY ("scope")
      )`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    await queryRunner.query(`DROP TABLE ${t('rate_limits')}`);
    await queryRunner.query(`ALTER TABLE ${t('virtual_keys')} DROP COLUMN "cache_ttl_secs"`);
  }
}
