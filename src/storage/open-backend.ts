import { BackendName, StorageBackend, StorageOptions } from './ports/storage-backend';

/**
 * Opens one backend by name. Drivers are loaded lazily so a gateway on SQLite never loads mongoose,
 * pg or ioredis.
 */
export async function openBackend(name: BackendName, options: StorageOptions): Promise<StorageBackend> {
  switch (name) {
    case 'memory':
      return (await import('./backends/memory/memory.backend')).openMemoryBackend();
    case 'state':
      return (await import('./backends/state/state.backend')).openStateBackend(options);
    case 'sqlite':
    case 'postgres':
      return (await import('./backends/typeorm/typeorm.backend')).openTypeormBackend(name, options);
    case 'mongodb':
      return (await import('./backends/mongoose/mongoose.backend')).openMongooseBackend(options);
    case 'redis':
      return (await import('./backends/redis/redis.backend')).openRedisBackend(options);
  }
}
