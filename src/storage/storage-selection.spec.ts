import { StorageSelectionInput, storageCandidates } from './storage-selection';

const none: StorageSelectionInput = { forced: null, fallback: true, redisUrlVariable: null, postgres: false, mongodb: false };
const order = (input: Partial<StorageSelectionInput>) =>
  storageCandidates({ ...none, ...input }).map((c) => `${c.backend}<${c.selectedBy}`);

describe('storageCandidates', () => {
  it('defaults to sqlite when nothing is configured', () => {
    expect(order({})).toEqual(['sqlite<default']);
  });

  it('prefers redis, then postgres, then mongodb, then sqlite, falling back in that order', () => {
    const all = { redisUrlVariable: 'REDIS_URL' as const, postgres: true, mongodb: true };
    expect(order(all)).toEqual(['redis<REDIS_URL', 'postgres<POSTGRES_DSN', 'mongodb<MONGODB_URI', 'sqlite<default']);
    expect(order({ postgres: true, mongodb: true })).toEqual(['postgres<POSTGRES_DSN', 'mongodb<MONGODB_URI', 'sqlite<default']);
    expect(order({ mongodb: true })).toEqual(['mongodb<MONGODB_URI', 'sqlite<default']);
    expect(order({ redisUrlVariable: 'REDIS_URL', mongodb: true })).toEqual(['redis<REDIS_URL', 'mongodb<MONGODB_URI', 'sqlite<default']);
  });

  it('names VALKEY_URL when it configures redis', () => {
    expect(order({ redisUrlVariable: 'VALKEY_URL' })).toEqual(['redis<VALKEY_URL', 'sqlite<default']);
  });

  it('puts a forced backend first, then the other configured ones, then sqlite', () => {
    expect(order({ forced: 'postgres', postgres: true, redisUrlVariable: 'REDIS_URL' })).toEqual([
      'postgres<STORAGE_BACKEND',
      'redis<REDIS_URL',
      'sqlite<default',
    ]);
    expect(order({ forced: 'memory', postgres: true })).toEqual(['memory<STORAGE_BACKEND', 'postgres<POSTGRES_DSN', 'sqlite<default']);
    expect(order({ forced: 'state' })).toEqual(['state<STORAGE_BACKEND', 'sqlite<default']);
    expect(order({ forced: 'sqlite', postgres: true })).toEqual(['sqlite<STORAGE_BACKEND', 'postgres<POSTGRES_DSN']);
  });

  it('tries only the first candidate when fallback is disabled', () => {
    expect(order({ fallback: false, redisUrlVariable: 'REDIS_URL', postgres: true })).toEqual(['redis<REDIS_URL']);
    expect(order({ fallback: false, forced: 'mongodb', mongodb: true })).toEqual(['mongodb<STORAGE_BACKEND']);
    expect(order({ fallback: false })).toEqual(['sqlite<default']);
  });
});
