import Redis from 'ioredis';
import { Client } from 'pg';
import { redactUrl } from '../../src/storage/redact';

/**
 * The test run's one-line answer when a service it needs is missing: which service, the address tried,
 * the cause, and what to do. Thrown by the global setup instead of letting every suite fail on its own.
 */
export class MissingServiceError extends Error {}

const START_POSTGRES = "start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or `bash .ci/run`)";
const START_REDIS =
  'start it (`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`, or `bash .ci/run`)';

function cause(error: unknown): string {
  const e = error as { code?: string; message?: string; errors?: Array<{ message?: string }> };
  // pg reports a refused dual-stack connect as an AggregateError with an empty message.
  const text = e.message || e.errors?.map((x) => x.message).join(', ') || e.code || String(error);
  return text.replace(/\.+$/, '');
}

/**
 * Makes sure the PostgreSQL server behind `dsn` answers and holds the database the DSN names, creating
 * it when missing (a fresh machine has only `postgres`). Suites create their own schemas in it.
 */
export async function ensurePostgresDatabase(dsn: string, variable: string): Promise<void> {
  const url = new URL(dsn);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  const maintenance = new URL(dsn);
  maintenance.pathname = '/postgres';
  const client = new Client({ connectionString: maintenance.toString(), connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new MissingServiceError(
      `PostgreSQL is not reachable at ${url.host} (${variable}=${redactUrl(dsn)}): ${cause(error)}. ` +
        `Tests need it: ${START_POSTGRES}, or set ${variable} to a server that answers.`,
    );
  }
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) {
      try {
        await client.query(`CREATE DATABASE "${database.replaceAll('"', '""')}"`);
      } catch (error) {
        // Created meanwhile by another run, which is what we wanted: 42P04 duplicate_database, or
        // 23505 when the two CREATE DATABASE statements met in pg_database's unique index.
        if (!['42P04', '23505'].includes((error as { code?: string }).code ?? '')) {
          throw new MissingServiceError(`PostgreSQL at ${url.host}: cannot create database "${database}" (${variable}): ${cause(error)}`);
        }
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Makes sure Redis answers PING at `url`. */
export async function ensureRedis(url: string, variable: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // The connect promise only says "Connection is closed"; the socket's own error says why.
  let socketError: Error | null = null;
  redis.on('error', (error: Error) => (socketError = error));
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    const { host } = new URL(url);
    throw new MissingServiceError(
      `Redis is not reachable at ${host} (${variable}=${redactUrl(url)}): ${cause(socketError ?? error)}. ` +
        `Tests need it: ${START_REDIS}, or set ${variable} to a server that answers.`,
    );
  } finally {
    redis.disconnect();
  }
}
