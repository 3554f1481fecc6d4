import { loadAppConfig } from '../app-config';
import { l2RedisUrl } from './l2-url';

describe('l2RedisUrl', () => {
  it('uses CACHE_REDIS_URL whatever the store, with valkey schemes made redis ones', () => {
    const config = loadAppConfig({ CACHE_REDIS_URL: 'valkey://cache:6379/1' });
    expect(l2RedisUrl(config.cache, config.storage, 'sqlite')).toBe('redis://cache:6379/1');
    expect(l2RedisUrl(config.cache, config.storage, 'redis')).toBe('redis://cache:6379/1');
  });

  it("falls back to the store's server only when the store is redis, else there is no L2", () => {
    const config = loadAppConfig({ REDIS_URL: 'redis://store:6379' });
    expect(l2RedisUrl(config.cache, config.storage, 'redis')).toBe('redis://store:6379');
    expect(l2RedisUrl(config.cache, config.storage, 'sqlite')).toBeNull();
    const none = loadAppConfig({});
    expect(l2RedisUrl(none.cache, none.storage, 'memory')).toBeNull();
  });
});
