import { z } from 'zod';

/**
 * Building blocks of the environment schema. Each feature declares the variables it reads, with
 * these, in its own `*.config.ts` slice; `loadConfig` validates all of them as one schema.
 */

/** Unset and empty variables both mean "use the default". */
export const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

export const integer = (min: number, fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess(
    (v) => (v === '' || v === undefined ? fallback : Number(v)),
    z.number({ error: 'expected an integer' }).int('expected an integer').min(min).max(max),
  );

export const boolean = (fallback: boolean) =>
  z.preprocess((v) => {
    if (v === '' || v === undefined) return fallback;
    if (typeof v !== 'string') return v;
    const s = v.toLowerCase();
    return ['true', '1', 'yes', 'on'].includes(s) ? true : ['false', '0', 'no', 'off'].includes(s) ? false : v;
  }, z.boolean({ error: 'expected true or false' }));

/** A URL with one of the given schemes. The value is never echoed back: it may hold a password. */
export const url = (...protocols: string[]) =>
  optional(
    z.string().refine(
      (v) => {
        try {
          return protocols.includes(new URL(v).protocol.replace(/:$/, ''));
        } catch {
          return false;
        }
      },
      { message: `expected a URL starting with ${protocols.map((p) => `${p}://`).join(' or ')} (value not shown)` },
    ),
  );

/** Valkey speaks the Redis protocol; ioredis only knows the redis schemes. */
export function redisScheme(url: string): string {
  return url.replace(/^valkey(s?):/, 'redis$1:');
}
