import { MigrationInterface, QueryRunner } from 'typeorm';
import { tableNamer } from './1767225600000-initial-schema';

/** A key's `allowed_routes` (JSON array of globs); keys stored before it read as `[]`, every route. */
export class PostgresKeyAllowedRoutes1767657600000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE ${tableNamer(queryRunner)('virtual_keys')} ADD COLUMN "allowed_routes" text NOT NULL DEFAULT '[]'`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE ${tableNamer(queryRunner)('virtual_keys')} DROP COLUMN "allowed_routes"`);
  }
}
