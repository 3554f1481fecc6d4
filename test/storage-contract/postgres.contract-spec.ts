import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { PostgresInitialSchema1767225600000 } from '../../src/storage/backends/typeorm/migrations/postgres/1767225600000-initial-schema';
import { PostgresLedgerFunctions1767398400000 } from '../../src/storage/backends/typeorm/migrations/postgres/1767398400000-ledger-functions';
import { openTypeormBackend } from '../../src/storage/backends/typeorm/typeorm.backend';
import { describeStorageContract } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';
import { testStorageOptions } from './options';

/** TEST_POSTGRES_DSN, or the local database the CI script creates. */
const DSN = testStorageOptions().postgres.dsn;

function postgresOptions(schema: string) {
  return testStorageOptions({ postgres: { dsn: DSN, poolMin: 1, poolMax: 5, schema } });
}

/** Each prepare() gets its own schema, so runs (and their NOTIFY channels) never see each other. */
function uniqueSchema(): string {
  return `ditto_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

async function dropSchema(schema: string): Promise<void> {
  const admin = new DataSource({ type: 'postgres', url: DSN });
  await admin.initialize();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await admin.destroy();
  }
}

const target: ContractTarget = {
  name: 'postgres',
  shared: true,
  persistent: true,
  prepare: async () => {
    const schema = uniqueSchema();
    const options = postgresOptions(schema);
    return { open: () => openTypeormBackend('postgres', options), teardown: () => dropSchema(schema) };
  },
};

describeStorageContract(target);
describeJobLockContract(target, { freedBy: 'session-end' });

describe('postgres backend', () => {
  it('migrates a new schema once, concurrently, and describes itself without secrets', async () => {
    const schema = uniqueSchema();
    try {
      // Two replicas starting together: the migration lock makes one wait for the other.
      const [a, b] = await Promise.all([
        openTypeormBackend('postgres', postgresOptions(schema)),
        openTypeormBackend('postgres', postgresOptions(schema)),
      ]);
      expect(a.details()).toEqual({ dsn: expect.any(String), schema, pool: { min: 1, max: 5 } });
      await Promise.all([a.close(), b.close(), a.close()]);
      const reopened = await openTypeormBackend('postgres', postgresOptions(schema));
      expect(await reopened.keys.count()).toBe(0);
      await reopened.close();
    } finally {
      await dropSchema(schema);
    }
  });

  it('upgrades a schema written before the response cache: its keys follow the global TTL', async () => {
    const schema = uniqueSchema();
    try {
      const old = new DataSource({
        type: 'postgres',
        url: DSN,
        schema,
        migrations: [PostgresInitialSchema1767225600000, PostgresLedgerFunctions1767398400000],
      });
      await old.initialize();
      await old.query(`CREATE SCHEMA "${schema}"`);
      await old.runMigrations();
      await old.query(
        `INSERT INTO "${schema}".virtual_keys (id, name, token_hash, token_prefix, enabled, expires_at, tenant_id, project_id,
           user_id, models, limit_rpm, limit_tpm, budget_total_tokens, budget_total_usd_micros, route, metadata, created_at, updated_at)
         VALUES ('old', NULL, 'old-hash', 'sk-ditto-old', true, NULL, NULL, NULL, NULL, '[]', 60, NULL, NULL, NULL, NULL, '{}', 1, 1)`,
      );
      await old.destroy();
      const upgraded = await openTypeormBackend('postgres', postgresOptions(schema));
      try {
        expect(await upgraded.keys.get('old')).toMatchObject({ limits: { rpm: 60, tpm: null }, cache: { ttlSecs: null }, allowedRoutes: [] });
      await upgraded.keys.update({ ...(await upgraded.keys.get('old'))!, allowedRoutes: ['/v1/embeddings'] });
      expect((await upgraded.keys.get('old'))?.allowedRoutes).toEqual(['/v1/embeddings']);
        await upgraded.rateLimits.put({ scope: 'key:old', rpm: 1, tpm: null, updatedAt: 1 });
        expect((await upgraded.rateLimits.list(10, null)).items.map((l) => l.scope)).toEqual(['key:old']);
      } finally {
        await upgraded.close();
      }
    } finally {
      await dropSchema(schema);
    }
  });

  it('names the setting and the cause when it cannot connect, without the password', async () => {
    const options = testStorageOptions({
      postgres: { dsn: 'postgres://ditto:s3cret-pw@127.0.0.1:1/ditto', poolMin: 1, poolMax: 2, schema: 'x' },
    });
    const error = await openTypeormBackend('postgres', options).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/^POSTGRES_DSN postgres:\/\/\*\*\*@127\.0\.0\.1:1\/ditto: .*ECONNREFUSED/);
    expect(error?.message).not.toContain('s3cret-pw');
  });
});
