import { ConnectOptions, Connection, createConnection } from 'mongoose';
import { redactUrl } from '../../redact';
import { StorageBackend, StorageOptions } from '../../ports/storage-backend';
import { MongooseAuditLogRepository } from './mongoose-audit-log.repository';
import { MongooseChangeFeed } from './mongoose-change-feed';
import { MongooseJobLock } from './mongoose-job-lock';
import { MongooseLedger } from './mongoose-ledger';
import { MongooseRateLimitRepository } from './mongoose-rate-limit.repository';
import { MongooseVirtualKeyRepository } from './mongoose-virtual-key.repository';
import { MongooseModels, createIndexes, createModels } from './mongoose.schemas';

/** Bounds how long an unreachable server can hold up start-up (and the fallback to the next backend). */
const SERVER_SELECTION_TIMEOUT_MS = 5_000;

/**
 * Connects its own Mongoose connection (never the global one), pings, builds the declared indexes
 * and starts the change-feed poller before resolving. Any failure closes what was opened and rejects
 * with a message naming MONGODB_URI (credentials redacted) and the cause.
 */
export async function openMongooseBackend(options: StorageOptions): Promise<StorageBackend> {
  const connection = await connectMongoose(options);
  return mongooseBackend(connection, createModels(connection), options);
}

/**
 * How connections to the server are made: the database, bounded waits for an unreachable server, no
 * command buffering while disconnected (callers answer 503 at once), indexes built when the backend is
 * assembled (awaited) rather than in the background. The application's connection (MongooseModule) too.
 */
export function connectionOptions(options: StorageOptions): ConnectOptions {
  return {
    dbName: options.mongodb.database,
    serverSelectionTimeoutMS: SERVER_SELECTION_TIMEOUT_MS,
    connectTimeoutMS: SERVER_SELECTION_TIMEOUT_MS,
    bufferCommands: false,
    autoIndex: false,
    autoCreate: false,
  };
}

/** Connects and pings (the storage selection's probe). */
export async function connectMongoose(options: StorageOptions): Promise<Connection> {
  const { uri } = options.mongodb;
  if (!uri) throw failure(options, 'MONGODB_URI is not set');
  let connection: Connection | null = null;
  try {
    connection = createConnection(uri, connectionOptions(options));
    await connection.asPromise();
    await ping(connection);
    return connection;
  } catch (error) {
    await connection?.close(true).catch(() => undefined);
    throw failure(options, error);
  }
}

/**
 * The ports on a connected connection and its models: builds the declared indexes (idempotent) and
 * starts the change-feed poller. On failure it closes the connection and rejects like `connectMongoose`.
 */
export async function mongooseBackend(connection: Connection, models: MongooseModels, options: StorageOptions): Promise<StorageBackend> {
  let feed: MongooseChangeFeed | null = null;
  try {
    await createIndexes(models);
    feed = await MongooseChangeFeed.start(models, options.changePollMs);
    return backend(connection, feed, models, options.mongodb.uri, options.mongodb.database);
  } catch (error) {
    await feed?.stop();
    await connection.close(true).catch(() => undefined);
    throw failure(options, error);
  }
}

function failure(options: StorageOptions, error: unknown): Error {
  const { uri, database } = options.mongodb;
  const where = `MONGODB_URI=${uri ? redactUrl(uri) : '(not set)'}, database '${database}'`;
  const cause = error instanceof Error ? error.message : String(error);
  // A driver message may quote the connection string; never let credentials through.
  return new Error(`MongoDB storage cannot start (${where}): ${uri ? cause.split(uri).join(redactUrl(uri)) : cause}`, { cause: error });
}

async function ping(connection: Connection): Promise<void> {
  const db = connection.db;
  if (!db) throw new Error('connection has no database handle');
  await db.command({ ping: 1 });
}

function backend(
  connection: Connection,
  feed: MongooseChangeFeed,
  models: MongooseModels,
  uri: string,
  database: string,
): StorageBackend {
  let closing: Promise<void> | null = null;
  return {
    name: 'mongodb',
    keys: new MongooseVirtualKeyRepository(models),
    budgets: new MongooseLedger(models, 'tokens'),
    costs: new MongooseLedger(models, 'usd_micros'),
    audit: new MongooseAuditLogRepository(models),
    rateLimits: new MongooseRateLimitRepository(models),
    changes: feed,
    locks: new MongooseJobLock(models),
    ping: () => ping(connection),
    details: () => ({ uri: redactUrl(uri), database }),
    close: () => {
      closing ??= (async () => {
        await feed.stop();
        await connection.close();
      })();
      return closing;
    },
  };
}
