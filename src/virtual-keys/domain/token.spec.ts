import { displayPrefix, generateToken, hashToken } from './token';

describe('virtual key tokens', () => {
  it('generates distinct sk-ditto- tokens with at least 32 base62 characters', () => {
    const tokens = new Set(Array.from({ length: 1000 }, generateToken));
    expect(tokens.size).toBe(1000);
    for (const token of tokens) expect(token).toMatch(/^sk-ditto-[0-9A-Za-z]{32,}$/);
  });

  it('hashes with SHA-256 hex and shows only a short prefix', () => {
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const token = generateToken();
    expect(displayPrefix(token)).toBe(token.slice(0, 13));
    expect(displayPrefix('imported-token-123456')).toBe('impo');
  });
});
