import { randomInt } from 'node:crypto';
import { sha256Hex } from '../../common/sha256';

export const TOKEN_PREFIX = 'sk-ditto-';
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** SHA-256 hex of a token: the only form in which a token is stored. */
export function hashToken(token: string): string {
  return sha256Hex(token);
}

/** A new token: `sk-ditto-` + 40 base62 characters from the CSPRNG (about 238 bits). */
export function generateToken(): string {
  let out = TOKEN_PREFIX;
  for (let i = 0; i < 40; i++) out += BASE62[randomInt(62)];
  return out;
}

/** The part of a token safe to display: `sk-ditto-` + 4 characters, never more than a third of it. */
export function displayPrefix(token: string): string {
  const visible = token.startsWith(TOKEN_PREFIX) ? TOKEN_PREFIX.length + 4 : 4;
  return token.slice(0, Math.min(visible, Math.floor(token.length / 3)));
}
