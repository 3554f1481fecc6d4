import { CachedResponse } from './domain/cached-response';
import { MemoryLru, entrySize } from './memory-lru';

const NOW = 1_700_000_000_000;

function response(overrides: Partial<CachedResponse> = {}, bodyBytes = 100): CachedResponse {
  return {
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: Buffer.alloc(bodyBytes, 'x'),
    usage: null,
    keyId: 'k1',
    tenantId: null,
    model: 'gpt-4o-mini',
    storedAt: NOW,
    expiresAt: NOW + 60_000,
    ...overrides,
  };
}

describe('MemoryLru', () => {
  it('returns what was stored until it expires, then misses and forgets it', () => {
    const lru = new MemoryLru(10, 1_000_000);
    const entry = response();
    lru.set('a', entry);
    expect(lru.get('a', NOW + 59_999)).toBe(entry);
    expect(lru.get('a', NOW + 60_000)).toBeNull();
    expect(lru.stats()).toMatchObject({ entries: 0, bytes: 0 });
    expect(lru.get('missing', NOW)).toBeNull();
  });

  it('evicts the least recently used entry past the entry bound', () => {
    const lru = new MemoryLru(3, 1_000_000);
    for (const hash of ['a', 'b', 'c']) lru.set(hash, response());
    expect(lru.get('a', NOW)).not.toBeNull(); // a is now the most recent: b is the oldest
    lru.set('d', response());
    expect(lru.stats().entries).toBe(3);
    expect(lru.get('b', NOW)).toBeNull();
    for (const hash of ['a', 'c', 'd']) expect(lru.get(hash, NOW)).not.toBeNull();
  });

  it('evicts as many old entries as it takes to stay within the byte bound', () => {
    const size = entrySize(response());
    const lru = new MemoryLru(100, size * 3);
    for (const hash of ['a', 'b', 'c']) lru.set(hash, response());
    expect(lru.stats().bytes).toBe(size * 3);
    lru.set('big', response({}, 100 + size)); // costs two small entries' worth more
    expect(lru.stats().bytes).toBeLessThanOrEqual(size * 3);
    expect(lru.get('a', NOW)).toBeNull();
    expect(lru.get('b', NOW)).toBeNull();
    expect(lru.get('c', NOW)).not.toBeNull();
    expect(lru.get('big', NOW)).not.toBeNull();
  });

  it('refuses an entry larger than the whole byte bound, keeping what it has', () => {
    const lru = new MemoryLru(100, 2000);
    lru.set('a', response());
    expect(lru.set('huge', response({}, 2000))).toBe(false);
    expect(lru.get('huge', NOW)).toBeNull();
    expect(lru.get('a', NOW)).not.toBeNull();
  });

  it('replaces an entry under the same hash without counting it twice', () => {
    const lru = new MemoryLru(10, 1_000_000);
    lru.set('a', response());
    const newer = response({ status: 201 });
    lru.set('a', newer);
    expect(lru.stats()).toMatchObject({ entries: 1, bytes: entrySize(newer) });
    expect(lru.get('a', NOW)).toBe(newer);
    expect(lru.delete('a')).toBe(true);
    expect(lru.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('purges by key id, by model, by both, or everything, and says how many went', () => {
    const lru = new MemoryLru(10, 1_000_000);
    lru.set('k1-m1', response({ keyId: 'k1', model: 'm1' }));
    lru.set('k1-m2', response({ keyId: 'k1', model: 'm2' }));
    lru.set('k2-m1', response({ keyId: 'k2', model: 'm1' }));
    lru.set('k2-none', response({ keyId: 'k2', model: null }));
    lru.set('k3-m2', response({ keyId: 'k3', model: 'm2' }));

    expect(lru.purge({ keyId: 'k1', model: 'm2' })).toBe(1);
    expect(lru.get('k1-m2', NOW)).toBeNull();
    expect(lru.get('k1-m1', NOW)).not.toBeNull();

    expect(lru.purge({ model: 'm1' })).toBe(2);
    expect(lru.get('k1-m1', NOW)).toBeNull();
    expect(lru.get('k2-m1', NOW)).toBeNull();

    expect(lru.purge({ keyId: 'k2' })).toBe(1);
    expect(lru.get('k2-none', NOW)).toBeNull();
    expect(lru.get('k3-m2', NOW)).not.toBeNull();

    expect(lru.purge({})).toBe(1);
    expect(lru.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });
});
