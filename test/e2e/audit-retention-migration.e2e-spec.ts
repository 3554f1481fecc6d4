import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { loadAppConfig } from '../../src/app-config';
import { PostgresInitialSchema1767225600000 } from '../../src/storage/backends/typeorm/migrations/postgres/1767225600000-initial-schema';
import { PostgresLedgerFunctions1767398400000 } from '../../src/storage/backends/typeorm/migrations/postgres/1767398400000-ledger-functions';
import { PostgresCacheTtlAndRateLimits1767484800000 } from '../../src/storage/backends/typeorm/migrations/postgres/1767484800000-cache-ttl-and-rate-limits';
import { openBackend } from '../../src/storage/open-backend';
import { StorageBackend } from '../../src/storage/ports/storage-backend';
import { BackendEnv, PG_DSN, backendEnv } from './backends';

const ROWS = 50_000;
const HOUR = 3_600_000;

/** Every stored value of every audit row, in (ts, id) order, as one digest. */
async function digest(client: Client, schema: string): Promise<{ n: number; md5: string }> {
  const { rows } = await client.query<{ n: string; md5: string }>(
    `SELECT count(*)::text AS n, md5(string_agg(concat_ws('|', id, ts, kind, request_id, key_id, tenant_id, payload), E'\\n' ORDER BY ts, id)) AS md5
       FROM "${schema}"."audit_log"`,
  );
  return { n: Number(rows[0].n), md5: rows[0].md5 };
}

describe('audit table partitioning on postgres: migrating an existing deployment (e2e)', () => {
  let store: BackendEnv;
  let client: Client;
  let backend: StorageBackend | null = null;

  beforeAll(async () => {
    store = await backendEnv('postgres');
    client = new Client({ connectionString: PG_DSN });
    await client.connect();
  });

  afterAll(async () => {
    await backend?.close();
    await client?.end();
    await store?.cleanup();
  });

  it('converts the unpartitioned table without losing or changing a row, and retention then drops it whole', async () => {
    const schema = store.env.POSTGRES_SCHEMA;
    // The schema as the previous release left it: the migrations before partitioning.
    await client.query(`CREATE SCHEMA "${schema}"`);
    const before = new DataSource({
      type: 'postgres',
      url: PG_DSN,
      schema,
      migrations: [PostgresInitialSchema1767225600000, PostgresLedgerFunctions1767398400000, PostgresCacheTtlAndRateLimits1767484800000],
      migrationsRun: true,
    });
    await before.initialize();
    await before.destroy();
    const now = Date.now();
    await client.query(
      `INSERT INTO "${schema}"."audit_log" (id, ts, kind, request_id, key_id, tenant_id, payload)
       SELECT 'old-' || lpad(g::text, 6, '0'), $1::bigint - g * 100, CASE WHEN g % 2 = 0 THEN 'proxy' ELSE 'admin.key.update' END,
              CASE WHEN g % 5 = 0 THEN NULL ELSE 'req-' || g END, 'key-' || (g % 7), CASE WHEN g % 3 = 0 THEN 'acme' END,
              '{"i":' || g || ',"text":"caf\\u00e9 \\"quoted\\""}'
         FROM generate_series(1, $2::int) g`,
      [now, ROWS],
    );
    const original = await digest(client, schema);
    expect(original.n).toBe(ROWS);

    backend = await openBackend('postgres', loadAppConfig(store.env).storage.options);
    const { rows: kind } = await client.query<{ relkind: string }>(`SELECT relkind FROM pg_class WHERE oid = to_regclass($1)`, [`"${schema}"."audit_log"`]);
    expect(kind[0].relkind).toBe('p');
    expect(await digest(client, schema)).toEqual(original);

    // The port reads the rows as before: newest first, by key, and the legacy partition takes part in
    // keyset paging and duplicate skipping like any other.
    const newest = await backend.audit.query({ keyId: 'key-1' }, 3, null);
    expect(newest.items.map((r) => r.id)).toEqual(['old-000001', 'old-000008', 'old-000015']);
    await backend.audit.append([newest.items[0]]);
    expect(await backend.audit.count()).toBe(ROWS);

    // New rows go to time partitions created ahead; once the whole legacy partition is past the
    // retention, it goes in one statement.
    await backend.audit.prepareRetention(HOUR, now, 60_000);
    const fresh = { id: 'new-1', ts: now + 20_000, kind: 'proxy', requestId: null, keyId: null, tenantId: null, payload: { fresh: true } };
    await backend.audit.append([fresh]);
    const { rows: partitions } = await client.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1) ORDER BY 1`,
      [`"${schema}"."audit_log"`],
    );
    expect(partitions.map((p) => p.name)).toEqual(expect.arrayContaining(['audit_log_default', 'audit_log_legacy']));
    expect(partitions.length).toBeGreaterThan(2);
    const { rows: where } = await client.query<{ partition: string }>(`SELECT tableoid::regclass::text AS partition FROM "${schema}"."audit_log" WHERE id = 'new-1'`);
    expect(where[0].partition).toMatch(/audit_log_p\d+/);
    // The legacy partition ends where the migration found the clock (or one past its newest row).
    expect(await backend.audit.dropExpired(Date.now() + 1)).toBe(ROWS);
    expect(await backend.audit.count()).toBe(1);
    expect((await backend.audit.query({}, 10, null)).items).toEqual([fresh]);
  }, 60_000);
});
