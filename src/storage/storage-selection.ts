import { BackendName } from './ports/storage-backend';

/** What the selection needs to know from the environment (no URLs: selection does no I/O). */
export interface StorageSelectionInput {
  /** STORAGE_BACKEND when not `auto`. */
  forced: BackendName | null;
  /** STORAGE_FALLBACK. */
  fallback: boolean;
  /** Which variable configures redis (VALKEY_URL wins over REDIS_URL), or null. */
  redisUrlVariable: 'VALKEY_URL' | 'REDIS_URL' | null;
  postgres: boolean;
  mongodb: boolean;
}

export interface StorageCandidate {
  backend: BackendName;
  /** Why it is a candidate: `STORAGE_BACKEND`, the variable that configures it, or `default`. */
  selectedBy: string;
}

/**
 * The ordered backends to try (docs/storage.md): the forced backend, else the first configured in the
 * order redis > postgres > mongodb > sqlite. With fallback on, the remaining configured backends
 * follow in that order and sqlite (always available) closes the list; with fallback off, only the
 * first is tried.
 */
export function storageCandidates(input: StorageSelectionInput): StorageCandidate[] {
  const configured: StorageCandidate[] = [];
  if (input.redisUrlVariable) configured.push({ backend: 'redis', selectedBy: input.redisUrlVariable });
  if (input.postgres) configured.push({ backend: 'postgres', selectedBy: 'POSTGRES_DSN' });
  if (input.mongodb) configured.push({ backend: 'mongodb', selectedBy: 'MONGODB_URI' });
  configured.push({ backend: 'sqlite', selectedBy: 'default' });

  const ordered = input.forced
    ? [{ backend: input.forced, selectedBy: 'STORAGE_BACKEND' }, ...configured.filter((c) => c.backend !== input.forced)]
    : configured;
  return input.fallback ? ordered : ordered.slice(0, 1);
}
