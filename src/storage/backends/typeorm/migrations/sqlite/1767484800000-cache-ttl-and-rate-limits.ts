import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A key's response-cache TTL (NULL = the global setting, which is also what keys stored before this
 * migration read as) and the rate limits set per scope: one small row per scope, looked up and paged by
 * scope only.
 */
export class SqliteCacheTtlAndRateLimits1767484800000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "virtual_keys" ADD COLUMN "cache_ttl_secs" INTEGER`);
    await queryRunner.query(
      `CREATE TABLE "rate_limits" (
        "scope" TEXT NOT NULL PRIMARY KEY,
        "rpm" INTEGER,
        "tpm" INTEGER,
        "updated_at" INTEGER NOT NULL
      ) WITHOUT ROWID`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "rate_limits"`);
    await queryRunner.query(`ALTER TABLE "virtual_keys" DROP COLUMN "cache_ttl_secs"`);
  }
}
