import { randomBytes } from 'node:crypto';
import { createConnection, mongo } from 'mongoose';
import { openMongooseBackend } from '../../src/storage/backends/mongoose/mongoose.backend';
import { CHANGE_RETENTION_MS } from '../../src/storage/backends/mongoose/mongoose-change-feed';
import { describeStorageContract, sampleKey } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';
import { testStorageOptions } from './options';

// The test setup (test/support/global-setup.ts) sets these: MONGODB_URI, or a FerretDB it started
// (then MONGODB_URI is the one-command relay in front of it and TEST_FERRETDB_DIRECT_URI FerretDB itself).
const uri = process.env.MONGODB_URI ?? '';
const server = process.env.TEST_MONGODB_SERVER ?? 'MONGODB_URI';
const ferretdbDirect = process.env.TEST_FERRETDB_DIRECT_URI ?? '';

async function dropDatabase(database: string): Promise<void> {
  const connection = await createConnection(uri, { dbName: database, serverSelectionTimeoutMS: 5_000 }).asPromise();
  try {
    await connection.dropDatabase();
  } finally {
    await connection.close();
  }
}

const target: ContractTarget = {
  name: 'mongodb',
  variant: server,
  shared: true,
  persistent: true,
  prepare: async () => {
    // A database per test: instances opened by one test share it, tests never see each other.
    const database = `ditto_test_${randomBytes(8).toString('hex')}`;
    const options = testStorageOptions({ mongodb: { uri, database } });
    return { open: () => openMongooseBackend(options), teardown: () => dropDatabase(database) };
  },
};

/**
 * 200 concurrent `$inc` of one document from two clients, half of them guarded by `n < 50`: how many
 * guarded ones matched, and the counters at the end. A server that applies each single-document
 * update atomically (MongoDB) answers { guarded: 50, n: 50, m: 100 }.
 */
async function concurrentIncrements(serverUri: string): Promise<{ guarded: number; n: number; m: number }> {
  const database = `ditto_probe_${randomBytes(6).toString('hex')}`;
  const clients = [new mongo.MongoClient(serverUri), new mongo.MongoClient(serverUri)];
  try {
    const [one, two] = clients.map((client) => client.db(database).collection<{ _id: string; n: number; m: number }>('counters'));
    await one.insertOne({ _id: 'c', n: 0, m: 0 });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (i % 4 < 2 ? one : two).updateOne(i % 2 ? { _id: 'c', n: { $lt: 50 } } : { _id: 'c' }, { $inc: i % 2 ? { n: 1 } : { m: 1 } }),
      ),
    );
    const doc = await one.findOne({ _id: 'c' });
    await clients[0].db(database).dropDatabase();
    return { guarded: results.filter((r, i) => i % 2 === 1 && r.matchedCount === 1).length, n: doc!.n, m: doc!.m };
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

if (uri) {
  // Opening waits up to 5 s for server selection; let its error surface instead of a hook timeout.
  jest.setTimeout(20_000);
  describeStorageContract(target);
  describeJobLockContract(target, { freedBy: 'ttl' });

  describe(`mongodb backend (${server})`, () => {
    let database: string;
    let raw: mongo.MongoClient;

    beforeEach(async () => {
      database = `ditto_test_${randomBytes(8).toString('hex')}`;
      raw = await new mongo.MongoClient(uri).connect();
    });

    afterEach(async () => {
      await raw.close();
      await dropDatabase(database);
    });

    // The ledger's premise, checked on the server the suite runs against.
    it('runs against a server that applies concurrent single-document updates atomically', async () => {
      expect(await concurrentIncrements(uri)).toEqual({ guarded: 50, n: 50, m: 100 });
    });

    if (ferretdbDirect) {
      // Why the test setup puts FerretDB behind a relay that passes one command at a time. If this
      // starts failing after a FerretDB upgrade, the relay may no longer be needed.
      it('(FerretDB itself, without the relay, loses concurrent updates of one document)', async () => {
        const direct = await concurrentIncrements(ferretdbDirect);
        expect(direct.m).toBeLessThan(100);
      });
    }

    it('reads a key stored before per-key routes as allowing every route', async () => {
      const backend = await openMongooseBackend(testStorageOptions({ mongodb: { uri, database } }));
      try {
        await backend.keys.create(sampleKey('old', { allowedRoutes: ['/v1/embeddings'] }));
        await raw.db(database).collection('virtual_keys').updateOne({ _id: 'old' as never }, { $unset: { allowed_routes: '' } });
        expect((await backend.keys.get('old'))?.allowedRoutes).toEqual([]);
      } finally {
        await backend.close();
      }
    });

    it('stores audit payloads as JSON text (any keys, arrays of arrays), and still reads rows written as documents', async () => {
      await raw
        .db(database)
        .collection('audit_log')
        .insertOne({ _id: 'a0000000000000000000000001' as never, ts: 1n, kind: 'proxy', request_id: 'old', key_id: null, tenant_id: null, payload: { status: 200, nested: { a: 1 } } });
      const backend = await openMongooseBackend(testStorageOptions({ mongodb: { uri, database } }));
      try {
        const payload = { odd: { $where: '1', 'a.b': [[1, [2]]] }, status: 200 };
        await backend.audit.append([{ id: 'a0000000000000000000000002', ts: 2, kind: 'proxy', requestId: 'new', keyId: null, tenantId: null, payload }]);
        const rows = (await backend.audit.query({}, 10, null)).items;
        expect(rows.map((r) => [r.requestId, r.payload])).toEqual([
          ['new', payload],
          ['old', { status: 200, nested: { a: 1 } }],
        ]);
        expect(typeof (await raw.db(database).collection('audit_log').findOne({ request_id: 'new' }))!.payload).toBe('string');
      } finally {
        await backend.close();
      }
    });

    it('completes a ledger row written before window_end/headroom existed, and its limit still holds', async () => {
      // As the ledger wrote rows before: no derived fields; a window of an hour that ended long ago.
      const HOUR = 3_600_000;
      await raw
        .db(database)
        .collection('ledger_scopes')
        .insertMany([
          { kind: 'tokens', scope: 'key:old', limit: 100n, spent: 40n, reserved: 10n, period_ms: null, window_start: 0n, updated_at: 1n },
          { kind: 'tokens', scope: 'key:hourly', limit: 100n, spent: 90n, reserved: 0n, period_ms: BigInt(HOUR), window_start: 0n, updated_at: 1n },
        ]);
      const backend = await openMongooseBackend(testStorageOptions({ mongodb: { uri, database } }));
      try {
        expect(await backend.budgets.reserve('too-much', ['key:old'], 51)).toMatchObject({ ok: false, scope: 'key:old', spent: 40, reserved: 10 });
        expect(await backend.budgets.reserve('fits', ['key:old'], 50)).toEqual({ ok: true });
        expect(await backend.budgets.reserve('full', ['key:old'], 1)).toMatchObject({ ok: false, scope: 'key:old' });
        // The ended window rolls over on the first touch: 90 spent in 1970 does not count now.
        expect(await backend.budgets.reserve('new-window', ['key:hourly'], 100)).toEqual({ ok: true });
        expect(await backend.budgets.commit('fits', 20)).toBe(true);
        expect(await backend.budgets.get('key:old')).toMatchObject({ spent: 60, reserved: 10 });
        expect(await backend.budgets.reserve('rest', ['key:old'], 30)).toEqual({ ok: true });
        expect(await backend.budgets.reserve('over', ['key:old'], 1)).toMatchObject({ ok: false });
      } finally {
        await backend.close();
      }
    });

    it('deletes change-feed entries older than the retention, which no instance needs any more', async () => {
      const changes = raw.db(database).collection('changes');
      const now = Date.now();
      await changes.insertMany([
        { seq: 1n, entity: 'virtual_key', entity_id: 'old', at: new Date(now - CHANGE_RETENTION_MS - 60_000) },
        { seq: 2n, entity: 'virtual_key', entity_id: 'recent', at: new Date(now - 1000) },
      ]);
      const backend = await openMongooseBackend(testStorageOptions({ mongodb: { uri, database }, changePollMs: 50 }));
      try {
        const start = Date.now();
        while ((await changes.countDocuments({ entity_id: 'old' })) > 0 && Date.now() - start < 3000) {
          await new Promise((r) => setTimeout(r, 50));
        }
        expect((await changes.find().toArray()).map((c) => c.entity_id)).toEqual(['recent']);
      } finally {
        await backend.close();
      }
    });
  });
} else {
  process.stderr.write(
    '\n*** MongoDB storage contract suite SKIPPED: MONGODB_URI is not set and no FerretDB is installed (scripts/ferretdb.sh install) ***\n\n',
  );
  describe.skip('storage contract: mongodb (MONGODB_URI not set, FerretDB not installed)', () => {
    describeStorageContract(target);
    describeJobLockContract(target, { freedBy: 'ttl' });
  });
}
