import { BackendName, StorageOptions } from '../ports/storage-backend';
import { redactUrl } from '../redact';

export interface StoreLocation {
  backend: BackendName;
  options: StorageOptions;
  /** For messages: the location with credentials removed. */
  label: string;
}

const DEFAULTS: StorageOptions = {
  sqlite: { path: './data/ditto.sqlite' },
  state: { file: './data/gateway.state.json' },
  postgres: { dsn: '', poolMin: 1, poolMax: 4 },
  mongodb: { uri: '', database: 'ditto' },
  redis: { url: '', prefix: 'ditto', timeoutMs: 10_000 },
  changePollMs: 60_000,
};

/**
 * Reads a store location for the migration CLI:
 * `redis://…` / `rediss://…` / `valkey://…` (`?prefix=` overrides the key prefix, default `ditto`),
 * `postgres://…`, `mongodb://…/<database>` (default database `ditto`), `sqlite:<path>` or a path
 * ending in .sqlite/.sqlite3/.db, and a path ending in .json for a state file.
 */
export function parseStoreLocation(raw: string): StoreLocation {
  const scheme = /^([a-z+]+):/i.exec(raw)?.[1]?.toLowerCase();
  if (scheme === 'redis' || scheme === 'rediss' || scheme === 'valkey' || scheme === 'valkeys') {
    const url = new URL(raw.replace(/^valkey/i, 'redis'));
    const prefix = url.searchParams.get('prefix') ?? DEFAULTS.redis.prefix;
    url.searchParams.delete('prefix');
    return { backend: 'redis', options: { ...DEFAULTS, redis: { ...DEFAULTS.redis, url: url.toString(), prefix } }, label: redactUrl(raw) };
  }
  if (scheme === 'postgres' || scheme === 'postgresql') {
    new URL(raw);
    return { backend: 'postgres', options: { ...DEFAULTS, postgres: { ...DEFAULTS.postgres, dsn: raw } }, label: redactUrl(raw) };
  }
  if (scheme === 'mongodb' || scheme === 'mongodb+srv') {
    const database = decodeURIComponent(new URL(raw).pathname.replace(/^\//, '')) || DEFAULTS.mongodb.database;
    return { backend: 'mongodb', options: { ...DEFAULTS, mongodb: { uri: raw, database } }, label: redactUrl(raw) };
  }
  if (scheme === 'sqlite') {
    const path = raw.slice('sqlite:'.length);
    return { backend: 'sqlite', options: { ...DEFAULTS, sqlite: { path } }, label: path };
  }
  if (/\.(sqlite3?|db)$/i.test(raw)) return { backend: 'sqlite', options: { ...DEFAULTS, sqlite: { path: raw } }, label: raw };
  if (/\.json$/i.test(raw)) return { backend: 'state', options: { ...DEFAULTS, state: { file: raw } }, label: raw };
  throw new Error(
    `cannot tell which store "${redactUrl(raw)}" is: use redis://, postgres://, mongodb://, sqlite:<path> (or a .sqlite/.db path) or a .json state file`,
  );
}
