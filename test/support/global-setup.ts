import { existsSync } from 'node:fs';
import { mongo } from 'mongoose';
import { redactUrl } from '../../src/storage/redact';
import { PG_DSN, REDIS_URL } from '../e2e/backends';
import { FERRETDB_BIN, RunningFerretDB, startFerretDB } from './ferretdb';
import { SerialRelay, startSerialRelay } from './serial-relay';
import { MissingServiceError, ensurePostgresDatabase, ensureRedis } from './services';

/**
 * Jest global setup of the storage-contract and e2e projects (jest.config.js), so that `npm test` on a
 * fresh clone needs nothing but the two commands of the README:
 * - PostgreSQL and Redis must answer; if one does not, the run stops with one line naming it, the
 *   address tried and how to start it (never a stack trace per suite). The test database is created
 *   when missing; suites create their own schemas, key prefixes and databases in it.
 * - MongoDB: with MONGODB_URI set, that server is used. Without it, a FerretDB binary installed by
 *   `scripts/ferretdb.sh install` (or .ci/run) is started for the run. FerretDB, wherever it comes
 *   from, is put behind the one-command-at-a-time relay (serial-relay.ts explains why). With neither,
 *   the MongoDB suites are reported as skipped, loudly.
 *
 * Both projects name this file; it runs once per run either way (the second call finds it done).
 * The servers it starts live in Jest's own process (tests run in band) until the global teardown.
 */
interface Started {
  ferretdb?: RunningFerretDB;
  relay?: SerialRelay;
}

const STATE = Symbol.for('ditto.test.globalSetup');
type GlobalState = { [STATE]?: Promise<Started> };

export default async function globalSetup(): Promise<void> {
  const state = globalThis as GlobalState;
  state[STATE] ??= setUp();
  await state[STATE];
}

/** The global teardown (global-teardown.ts): stops what the setup started. */
export async function stopStarted(): Promise<void> {
  const state = globalThis as GlobalState;
  const started = await state[STATE]?.catch(() => null);
  delete state[STATE];
  await started?.relay?.close();
  await started?.ferretdb?.close();
}

async function setUp(): Promise<Started> {
  try {
    await ensurePostgresDatabase(PG_DSN, 'TEST_POSTGRES_DSN');
    await ensureRedis(REDIS_URL, 'TEST_REDIS_URL');
    return await setUpMongo();
  } catch (error) {
    if (!(error instanceof MissingServiceError)) throw error;
    // One line, no stack: Jest would print this error's stack, and the cause is not in our code.
    process.stderr.write(`\n${error.message}\n\n`);
    process.exit(1);
  }
}

async function setUpMongo(): Promise<Started> {
  const started: Started = {};
  let uri = process.env.MONGODB_URI ?? '';
  let origin = 'MONGODB_URI';
  if (!uri && existsSync(FERRETDB_BIN)) {
    started.ferretdb = await startFerretDB();
    uri = started.ferretdb.uri;
    origin = `started for this run from ${FERRETDB_BIN}`;
  }
  if (!uri) return started;
  const ferretdb = await ferretdbVersion(uri);
  if (ferretdb === null) {
    process.env.TEST_MONGODB_SERVER = 'MongoDB server of MONGODB_URI';
    return started;
  }
  const { port, hostname } = new URL(uri);
  started.relay = await startSerialRelay({ host: hostname, port: Number(port || 27017) });
  process.env.MONGODB_URI = started.relay.uri;
  // The FerretDB behind the relay, for the test that shows why the relay is there.
  process.env.TEST_FERRETDB_DIRECT_URI = uri;
  process.env.TEST_MONGODB_SERVER = `FerretDB ${ferretdb}, one command at a time`;
  process.stderr.write(`\nMongoDB suites: FerretDB ${ferretdb} at ${hostname}:${port} (${origin}), through the one-command relay at ${started.relay.uri}\n`);
  return started;
}

/** The FerretDB version a server reports in buildInfo, or null for any other server. */
async function ferretdbVersion(uri: string): Promise<string | null> {
  const client = new mongo.MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
  try {
    const info = await client.db('admin').command({ buildInfo: 1 });
    return typeof info.ferretdbVersion === 'string' ? info.ferretdbVersion : null;
  } catch (error) {
    throw new MissingServiceError(
      `MongoDB is not reachable at MONGODB_URI=${redactUrl(uri)}: ${(error as Error).message}. ` +
        'Start it (`scripts/ferretdb.sh start` prints a MONGODB_URI), or unset MONGODB_URI to skip the MongoDB suites.',
    );
  } finally {
    await client.close();
  }
}
