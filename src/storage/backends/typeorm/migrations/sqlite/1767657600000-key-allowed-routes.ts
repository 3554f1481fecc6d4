import { MigrationInterface, QueryRunner } from 'typeorm';

/** A key's `allowed_routes` (JSON array of globs); keys stored before it read as `[]`, every route. */
export class SqliteKeyAllowedRoutes1767657600000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "virtual_keys" ADD COLUMN "allowed_routes" TEXT NOT NULL DEFAULT '[]'`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "virtual_keys" DROP COLUMN "allowed_routes"`);
  }
}
