import { loadAppConfig } from '../app-config';
import { sharedCacheLocation } from './shared-cache';

describe('sharedCacheLocation', () => {
  it('uses CACHE_REDIS_URL whatever the store, with valkey schemes made redis ones, on a connection of its own', () => {
    const config = loadAppConfig({ CACHE_REDIS_URL: 'valkey://cache:6379/1' });
    expect(sharedCacheLocation(config.storage, 'sqlite')).toEqual({ url: 'redis://cache:6379/1', ownConnection: true });
    expect(sharedCacheLocation(config.storage, 'redis')).toEqual({ url: 'redis://cache:6379/1', ownConnection: true });
  });

  it("falls back to the store's server (and its connection) only when the store is redis, else there is no L2", () => {
    const config = loadAppConfig({ REDIS_URL: 'redis://store:6379' });
    expect(sharedCacheLocation(config.storage, 'redis')).toEqual({ url: 'redis://store:6379', ownConnection: false });
    expect(sharedCacheLocation(config.storage, 'sqlite')).toBeNull();
    const none = loadAppConfig({});
    expect(sharedCacheLocation(none.storage, 'memory')).toBeNull();
  });
});
