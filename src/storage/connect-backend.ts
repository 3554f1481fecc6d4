import type { TypeormConnection } from './backends/typeorm/typeorm.backend';
import { BackendName, StorageBackend, StorageOptions } from './ports/storage-backend';

/** What the storage selection's probe opened for the backend it chose; the rest is wired from it (backend-wiring.ts). */
export type BackendConnection =
  | { name: 'memory' | 'state'; backend: StorageBackend }
  | { name: 'sqlite' | 'postgres'; typeorm: TypeormConnection }
  | { name: 'mongodb' | 'redis' };

/**
 * The probe of one candidate: connect (and migrate) its store, or reject with a message naming the
 * setting and the cause. Drivers are loaded lazily so a gateway on SQLite never loads mongoose, pg or
 * ioredis. MongoDB and Redis are probed with a connection of their own that is closed again: the
 * application's connection is the one their Nest module opens (MongooseModule, RedisModule).
 */
export async function connectBackend(name: BackendName, options: StorageOptions): Promise<BackendConnection> {
  switch (name) {
    case 'memory':
      return { name, backend: await (await import('./backends/memory/memory.backend')).openMemoryBackend() };
    case 'state':
      // Reading the file is the probe: a corrupt one fails here, before anything is wired.
      return { name, backend: await (await import('./backends/state/state.backend')).openStateBackend(options) };
    case 'sqlite':
    case 'postgres':
      return { name, typeorm: await (await import('./backends/typeorm/typeorm.backend')).connectTypeorm(name, options) };
    case 'mongodb':
      await (await import('./backends/mongoose/mongoose.backend')).connectMongoose(options).then((connection) => connection.close());
      return { name };
    case 'redis':
      await (await import('./backends/redis/redis.backend')).probeRedis(options);
      return { name };
  }
}

/** Lets go of what a probe opened, when the application does not start after all. */
export async function disconnectBackend(connection: BackendConnection): Promise<void> {
  if (connection.name === 'sqlite' || connection.name === 'postgres') {
    const { dataSource, release } = connection.typeorm;
    if (dataSource.isInitialized) await dataSource.destroy();
    release();
  }
}
