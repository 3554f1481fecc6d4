import { StorageOptions } from '../../ports/storage-backend';
import { openMongooseBackend } from './mongoose.backend';

function options(uri: string): StorageOptions {
  return {
    sqlite: { path: ':memory:' },
    state: { file: 'unused.json' },
    postgres: { dsn: '', poolMin: 1, poolMax: 1 },
    mongodb: { uri, database: 'ditto' },
    redis: { url: '', prefix: 'ditto', timeoutMs: 1000 },
    changePollMs: 100,
  };
}

describe('openMongooseBackend', () => {
  it('rejects an unreachable server within seconds, naming MONGODB_URI without its password', async () => {
    const start = Date.now();
    const error = await openMongooseBackend(options('mongodb://ditto:s3cret@127.0.0.1:1/ditto')).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(Date.now() - start).toBeLessThan(10_000);
    expect(error?.message).toContain('MONGODB_URI=mongodb://***@127.0.0.1:1/ditto');
    expect(error?.message).toContain('ECONNREFUSED');
    expect(error?.message).not.toContain('s3cret');
  }, 15_000);

  it('rejects at once when MONGODB_URI is not set', async () => {
    await expect(openMongooseBackend(options(''))).rejects.toThrow('MONGODB_URI is not set');
  });
});
