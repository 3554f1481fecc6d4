import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { PostgresInitialSchema1767225600000 } from '../../src/storage/backends/typeorm/migrations/postgres/1767225600000-initial-schema';
import { PostgresLedgerFunctions1767398400000 } from '../../src/storage/backends/typeorm/migrations/postgres/1767398400000-ledger-functions';
import { openTypeormBackend } from '../../src/storage/backends/typeorm/typeorm.backend';
import { StorageBackend } from '../../src/storage/ports/storage-backend';
import { TURN_ANSWERS, TURN_OUTSTANDING, expectTurnCharged, prepareTurn, reserveAgain, submitTurn } from './accounting-turn';
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

describe('postgres accounting ledger: one batch function call per group of calls', () => {
  const HOUR = 3_600_000;
  const T0 = 1_700_000_000_000 - (1_700_000_000_000 % HOUR) + 1000;
  let schema: string;
  let a: StorageBackend;
  let b: StorageBackend;
  let sql: DataSource;

  beforeEach(async () => {
    schema = uniqueSchema();
    a = await openTypeormBackend('postgres', postgresOptions(schema));
    b = await openTypeormBackend('postgres', postgresOptions(schema));
    sql = new DataSource({ type: 'postgres', url: DSN });
    await sql.initialize();
  });

  afterEach(async () => {
    await Promise.all([a.close(), b.close(), sql.destroy()]);
    await dropSchema(schema);
  });

  /** How many transactions wrote the outstanding reservations with these ids (each batch is one). */
  async function writers(ids: string[]): Promise<number> {
    const [{ n }] = (await sql.query(`SELECT count(DISTINCT xmin::text)::int AS n FROM "${schema}".ledger_reservations WHERE id = ANY ($1)`, [ids])) as Array<{ n: number }>;
    return n;
  }

  it('applies the calls of a turn in one transaction, in submission order, each answered on its own', async () => {
    const both = a.accounting!;
    await prepareTurn(a, both, T0);
    // Reserved twice in one batch: the second is the same reservation, answered ok, charged once.
    const [answers, again] = await Promise.all([submitTurn(both, T0), reserveAgain(both, T0)]);
    expect([...answers, again]).toEqual([...TURN_ANSWERS, { ok: true }]);
    await expectTurnCharged(b, T0);
    expect((await a.budgets.listReservations(T0 + 1)).map((r) => r.id).sort()).toEqual(TURN_OUTSTANDING);
    // One transaction wrote them all (of both ledgers).
    expect(await writers(TURN_OUTSTANDING)).toBe(1);
  });

  it('rolls periodic windows over inside a batch, per call', async () => {
    await a.budgets.setLimit('key:p', 100, HOUR, T0);
    const both = a.accounting!;
    expect(await both.reserve('p1', ['key:p'], { tokens: 60, usdMicros: 0 }, T0)).toEqual({ ok: true });
    const next = T0 - 1000 + HOUR;
    const answers = await Promise.all([
      both.settle('p1', { tokens: 60, usdMicros: 0 }, T0 + 1),
      both.reserve('p2', ['key:p'], { tokens: 60, usdMicros: 0 }, T0 + 2),
      both.reserve('p3', ['key:p'], { tokens: 60, usdMicros: 0 }, next + 5),
      both.settle('p3', { tokens: 55, usdMicros: 0 }, next + 6),
    ]);
    expect(answers).toEqual([
      { tokens: true, usdMicros: true },
      { ok: false, ledger: 'tokens', scope: 'key:p', limit: 100, spent: 60, reserved: 0 },
      { ok: true },
      { tokens: true, usdMicros: true },
    ]);
    expect(await a.budgets.get('key:p', next + 7)).toMatchObject({ spent: 55, reserved: 0, windowStart: next });
  });

  it('batches what arrives while a batch commits, never over the limit, across two replicas and any scope order', async () => {
    await a.budgets.setLimit('tenant:hot', 3000, null);
    await a.costs.setLimit('key:x', 20_000, null);
    const scopesOf = (i: number) => (i % 3 === 0 ? ['key:x', 'tenant:hot'] : i % 3 === 1 ? ['tenant:hot', 'key:y'] : ['key:y', 'key:x', 'tenant:hot']);
    const ids = Array.from({ length: 600 }, () => randomUUID());
    // Each request reserves, then settles once its reserve is answered, as the gateway does.
    const outcomes = await Promise.all(
      ids.map(async (id, i) => {
        const ledger = (i % 2 === 0 ? a : b).accounting!;
        const reserved = await ledger.reserve(id, scopesOf(i), { tokens: 10, usdMicros: 50 });
        if (!reserved.ok) return reserved;
        await ledger.settle(id, i % 4 === 0 ? null : { tokens: 7, usdMicros: 30 });
        return reserved;
      }),
    );
    const admitted = ids.filter((_, i) => outcomes[i].ok);
    expect(admitted.length).toBeGreaterThan(0);
    const charged = ids.filter((_, i) => outcomes[i].ok && i % 4 !== 0).length;
    for (const scope of ['tenant:hot', 'key:x', 'key:y']) {
      const tokens = (await a.budgets.get(scope))!;
      expect(tokens.reserved).toBe(0);
      expect(tokens.spent).toBeLessThanOrEqual(tokens.limit ?? Infinity);
    }
    expect((await a.budgets.get('tenant:hot'))!.spent).toBe(charged * 7);
    const x = (await b.costs.get('key:x'))!;
    expect(x.spent).toBeLessThanOrEqual(20_000);
    expect(x.spent).toBe(ids.filter((_, i) => outcomes[i].ok && i % 4 !== 0 && i % 3 !== 1).length * 30);
    expect(await a.budgets.listReservations(Number.MAX_SAFE_INTEGER)).toEqual([]);
  });

  it('reserves one id sent from two replicas at once only once', async () => {
    await a.budgets.setLimit('key:twice', 1_000_000, null, T0);
    for (let i = 0; i < 20; i++) {
      const both = await Promise.all([a, b].map((r) => r.accounting!.reserve(`same${i}`, ['key:twice'], { tokens: 10, usdMicros: 1 }, T0)));
      expect(both).toEqual([{ ok: true }, { ok: true }]);
    }
    expect(await a.budgets.get('key:twice', T0)).toMatchObject({ reserved: 200 });
  });

  it('fails one bad call alone: the batch is tried again call by call', async () => {
    await a.budgets.setLimit('key:bad', 1000, null, T0);
    const both = a.accounting!;
    // 2^63 tokens do not fit PostgreSQL's bigint: that reserve fails, its neighbours are applied.
    const answers = await Promise.allSettled([
      both.reserve('good1', ['key:bad'], { tokens: 10, usdMicros: 0 }, T0),
      both.reserve('bad', ['key:bad'], { tokens: 2 ** 63, usdMicros: 0 }, T0),
      both.reserve('good2', ['key:bad'], { tokens: 20, usdMicros: 0 }, T0),
    ]);
    expect(answers.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(await a.budgets.get('key:bad', T0)).toMatchObject({ reserved: 30 });
  });

  it('answers every call submitted before close', async () => {
    const pending = Array.from({ length: 50 }, (_, i) => a.accounting!.reserve(`c${i}`, ['key:close'], { tokens: 1, usdMicros: 1 }, T0));
    await a.close();
    expect(await Promise.all(pending)).toEqual(pending.map(() => ({ ok: true })));
    expect(await b.budgets.get('key:close', T0)).toMatchObject({ reserved: 50 });
  });
});
