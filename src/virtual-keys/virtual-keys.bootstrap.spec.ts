import { gatewayFileSchema } from '../config/gateway-file';
import { keyFromConfig } from './virtual-keys.bootstrap';

describe('keyFromConfig', () => {
  const configured = (entry: Record<string, unknown>) =>
    gatewayFileSchema.parse({ virtual_keys: [{ id: 'k', token: 'sk-ditto-0123456789abcdef', ...entry }] }).virtual_keys[0];

  it('seeds the key\'s cache TTL from the gateway file, null when the file sets none', () => {
    expect(keyFromConfig(configured({}), 1).cache).toEqual({ ttlSecs: null });
    expect(keyFromConfig(configured({ cache: { ttl_secs: 0 } }), 1).cache).toEqual({ ttlSecs: 0 });
    expect(keyFromConfig(configured({ cache: { ttl_secs: 900 }, limits: { rpm: 5 } }), 1)).toMatchObject({
      cache: { ttlSecs: 900 },
      limits: { rpm: 5, tpm: null },
    });
  });
});
