import { StorageOptions } from '../../src/storage/ports/storage-backend';

/** Storage options for tests: local services, overridable through TEST_* variables. */
export function testStorageOptions(overrides: Partial<StorageOptions> = {}): StorageOptions {
  return {
    sqlite: { path: ':memory:' },
    state: { file: 'unused.json' },
    postgres: {
      dsn: process.env.TEST_POSTGRES_DSN ?? 'postgres://postgres@127.0.0.1:5432/ditto_test',
      poolMin: 2,
      poolMax: 10,
    },
    mongodb: { uri: process.env.MONGODB_URI ?? '', database: 'ditto_test' },
    redis: { url: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', prefix: 'ditto-test', timeoutMs: 10_000 },
    changePollMs: 100,
    ...overrides,
  };
}
