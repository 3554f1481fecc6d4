import crypto = require('node:crypto');
import { constantTimeEquals } from './constant-time';

describe('constantTimeEquals', () => {
  it('accepts only the exact secret, whatever the lengths', () => {
    expect(constantTimeEquals('s3cret-admin-token', 's3cret-admin-token')).toBe(true);
    expect(constantTimeEquals('s3cret-admin-tokeN', 's3cret-admin-token')).toBe(false);
    expect(constantTimeEquals('s3cret', 's3cret-admin-token')).toBe(false);
    expect(constantTimeEquals('', 's3cret-admin-token')).toBe(false);
    expect(constantTimeEquals('s3cret-admin-token-and-more', 's3cret-admin-token')).toBe(false);
  });

  it('decides with crypto.timingSafeEqual on equal-length digests', () => {
    const spy = jest.spyOn(crypto, 'timingSafeEqual');
    constantTimeEquals('short', 'a-much-longer-expected-secret');
    expect(spy).toHaveBeenCalledTimes(1);
    const [a, b] = spy.mock.calls[0] as [Buffer, Buffer];
    expect(a.length).toBe(32);
    expect(b.length).toBe(32);
    spy.mockRestore();
  });
});
