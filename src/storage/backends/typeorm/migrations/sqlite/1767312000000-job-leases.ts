import { MigrationInterface, QueryRunner } from 'typeorm';

/** Leases of the job locks (JobLock): one small row per lock name, looked up by that name only. */
export class SqliteJobLeases1767312000000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "job_leases" (
        "name" TEXT NOT NULL PRIMARY KEY,
        "holder" TEXT NOT NULL,
        "expires_at" INTEGER NOT NULL
      ) WITHOUT ROWID`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "job_leases"`);
  }
}
