/**
 * The sliding window, in one-second buckets: each scope counts what it admitted per second of the
 * clock (requests and tokens) and remembers when it last admitted something in each second. A
 * bucket counts in full while its latest admission is less than WINDOW_MS old, and not at all after:
 *
 *   use(now) = Σ { bucket | bucket.last + W > now }
 *
 * Every admission of the last 60 s sits in a bucket whose latest admission is no older than itself,
 * so `use` never counts less than the true last 60 s: admitting only when `use + cost ≤ limit` keeps
 * every 60 s span within the limit (a bucket counts up to its first second early: up to a second
 * longer than the window, never shorter). The wait for a refused request is exact: the buckets age
 * out one by one at `last + W`, so the first time enough of them have is known, and it is never
 * more than the window away (every `last` is in the past). At most 61 buckets per scope and kind.
 * `lua/rate-limit-admit.lua` keeps the same buckets in Redis; this file decides for both.
 */
export const WINDOW_MS = 60_000;

/** The width of a bucket: what an admission is rounded to, at most, when it ages out. */
export const BUCKET_MS = 1_000;

/** What a scope admitted within one BUCKET_MS of the clock. */
export interface Bucket {
  /** floor(time / BUCKET_MS) of its admissions. */
  index: number;
  requests: number;
  tokens: number;
  /** Epoch ms of its latest admission: it counts until `last + WINDOW_MS`. */
  last: number;
}

export type RateKind = 'requests' | 'tokens';

/** The bucket an admission at `now` goes in. */
export function bucketIndex(now: number): number {
  return Math.floor(now / BUCKET_MS);
}

/** Whether `bucket` still counts at `now`. */
export function live(bucket: Bucket, now: number): boolean {
  return bucket.last + WINDOW_MS > now;
}

/** What a scope used of one kind over the last window, as counted at `now`. */
export function used(buckets: readonly Bucket[], kind: RateKind, now: number): number {
  let sum = 0;
  for (const bucket of buckets) if (live(bucket, now)) sum += bucket[kind];
  return sum;
}

/** Whether `cost` more (1 request, or a request's tokens) stays within `limit` per minute. */
export function fits(buckets: readonly Bucket[], kind: RateKind, limit: number, cost: number, now: number): boolean {
  return used(buckets, kind, now) + cost <= limit;
}

/** What is left of `limit` now (never negative). */
export function remaining(buckets: readonly Bucket[], kind: RateKind, limit: number, now: number): number {
  return Math.max(0, limit - used(buckets, kind, now));
}

/**
 * Ms from `now` until `cost` more fits, if nothing else is counted meanwhile: the time the oldest
 * buckets have aged out far enough. 0 when it fits now; at most WINDOW_MS otherwise (when the
 * buckets' times are this clock's); Infinity when it never can (`cost > limit`: a request larger
 * than the tpm).
 */
export function retryAfterMs(buckets: readonly Bucket[], kind: RateKind, limit: number, cost: number, now: number): number {
  if (cost > limit) return Infinity;
  const counted = buckets.filter((bucket) => live(bucket, now)).sort((a, b) => a.last - b.last);
  let use = counted.reduce((sum, bucket) => sum + bucket[kind], 0);
  if (use + cost <= limit) return 0;
  for (const bucket of counted) {
    use -= bucket[kind];
    if (use + cost <= limit) return bucket.last + WINDOW_MS - now;
  }
  // Unreachable: with every bucket aged out the use is 0 and cost ≤ limit.
  return WINDOW_MS;
}
