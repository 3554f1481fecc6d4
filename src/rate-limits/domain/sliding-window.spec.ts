import { BUCKET_MS, Bucket, WINDOW_MS, bucketIndex, fits, live, remaining, retryAfterMs, used } from './sliding-window';

const NOW = 1_000 * WINDOW_MS + 12_345;
const bucket = (last: number, requests: number, tokens = 0): Bucket => ({ index: bucketIndex(last), requests, tokens, last });

describe('sliding window in one-second buckets', () => {
  it('numbers buckets by the second', () => {
    expect(BUCKET_MS).toBe(1000);
    expect(bucketIndex(999)).toBe(0);
    expect(bucketIndex(1000)).toBe(1);
  });

  it('counts a bucket in full until its latest admission is a window old, then not at all', () => {
    const b = bucket(NOW - 30_000, 5, 50);
    expect(live(b, NOW)).toBe(true);
    expect(live(b, NOW - 30_000 + WINDOW_MS - 1)).toBe(true);
    expect(live(b, NOW - 30_000 + WINDOW_MS)).toBe(false);
    const buckets = [b, bucket(NOW - 70_000, 100, 1000), bucket(NOW, 2, 20)];
    expect(used(buckets, 'requests', NOW)).toBe(7);
    expect(used(buckets, 'tokens', NOW)).toBe(70);
    expect(remaining(buckets, 'requests', 10, NOW)).toBe(3);
    expect(remaining(buckets, 'requests', 5, NOW)).toBe(0);
    expect(fits(buckets, 'tokens', 100, 30, NOW)).toBe(true);
    expect(fits(buckets, 'tokens', 100, 31, NOW)).toBe(false);
  });

  it('waits until the oldest buckets that must go have aged out: never longer than the window', () => {
    // 60 requests at one moment: a slot frees a window after it, not two windows (the old estimate).
    expect(retryAfterMs([bucket(NOW, 60)], 'requests', 60, 1, NOW)).toBe(WINDOW_MS);
    expect(retryAfterMs([bucket(NOW - 10_000, 60)], 'requests', 60, 1, NOW)).toBe(50_000);
    // Spread out: the oldest one decides for one request, more go for a larger cost.
    const spread = [bucket(NOW - 50_000, 0, 40), bucket(NOW - 20_000, 0, 40), bucket(NOW - 5_000, 0, 20)];
    expect(retryAfterMs(spread, 'tokens', 100, 1, NOW)).toBe(10_000);
    expect(retryAfterMs(spread, 'tokens', 100, 40, NOW)).toBe(10_000);
    expect(retryAfterMs(spread, 'tokens', 100, 41, NOW)).toBe(40_000);
    expect(retryAfterMs(spread, 'tokens', 100, 80, NOW)).toBe(40_000);
    expect(retryAfterMs(spread, 'tokens', 100, 81, NOW)).toBe(55_000);
  });

  it('answers 0 when it fits and Infinity when it never can', () => {
    expect(retryAfterMs([bucket(NOW, 10)], 'requests', 100, 1, NOW)).toBe(0);
    expect(retryAfterMs([], 'tokens', 100, 101, NOW)).toBe(Infinity);
    expect(retryAfterMs([], 'tokens', 100, 100, NOW)).toBe(0);
  });

  it('gives the exact first millisecond at which the request fits, at most a window away (randomised)', () => {
    let seed = 42;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let i = 0; i < 2000; i++) {
      const limit = 1 + random(500);
      const buckets = Array.from({ length: random(70) }, () => bucket(NOW - random(WINDOW_MS + 5000), random(limit + 1), random(limit + 1)));
      const kind = random(2) === 0 ? 'requests' : 'tokens';
      const cost = kind === 'requests' ? 1 : 1 + random(limit);
      const wait = retryAfterMs(buckets, kind, limit, cost, NOW);
      expect(wait).toBeLessThanOrEqual(WINDOW_MS);
      expect(fits(buckets, kind, limit, cost, NOW + wait)).toBe(true);
      if (wait > 0) expect(fits(buckets, kind, limit, cost, NOW + wait - 1)).toBe(false);
    }
  });
});
