/**
 * The sliding-window counter (Cloudflare's approximation of a true sliding log): time is cut into
 * fixed 60 s windows aligned to the epoch, each scope counts what it admitted in the current window
 * and remembers the previous one, and the use of "the last 60 s" is estimated as
 *
 *   previous × (1 − elapsed / W) + current
 *
 * i.e. the previous window is assumed to have been spread evenly. Two counters per scope and kind,
 * however high the rate. `lua/rate-limit-admit.lua` mirrors `fits`; everything is computed scaled by W
 * so both sides use the same integer arithmetic (exact in doubles up to 2^53: limits are capped at
 * MAX_RATE_LIMIT, so `limit × W` stays far below).
 */
export const WINDOW_MS = 60_000;


/** What one scope counted (requests, or tokens) in the current window and the one before. */
export interface WindowCounts {
  previous: number;
  current: number;
}

export const NO_COUNTS: WindowCounts = Object.freeze({ previous: 0, current: 0 });

/** The window `now` falls in (windows are numbered from the epoch). */
export function windowIndex(now: number): number {
  return Math.floor(now / WINDOW_MS);
}

/** Ms since the start of `now`'s window. */
export function elapsedInWindow(now: number): number {
  return now - windowIndex(now) * WINDOW_MS;
}

/** The estimate of the last 60 s, times WINDOW_MS (an integer). */
function scaledUse(counts: WindowCounts, elapsed: number): number {
  return counts.previous * (WINDOW_MS - elapsed) + counts.current * WINDOW_MS;
}

/** Whether `cost` more (1 request, or a request's tokens) stays within `limit` per minute. */
export function fits(counts: WindowCounts, limit: number, cost: number, elapsed: number): boolean {
  return scaledUse(counts, elapsed) + cost * WINDOW_MS <= limit * WINDOW_MS;
}

/** What is left of `limit` now (whole units, never negative). */
export function remaining(counts: WindowCounts, limit: number, elapsed: number): number {
  return Math.max(0, Math.floor((limit * WINDOW_MS - scaledUse(counts, elapsed)) / WINDOW_MS));
}

/**
 * Ms from now until `cost` more would fit, if nothing else is counted meanwhile (the estimate only
 * falls with time: the previous window's share shrinks, then the current window becomes the previous).
 * 0 when it fits now; Infinity when it never can (`cost > limit`: a request larger than the tpm).
 */
export function retryAfterMs(counts: WindowCounts, limit: number, cost: number, elapsed: number): number {
  if (cost > limit) return Infinity;
  // In this window: previous × (W − t) + (current + cost) × W ≤ limit × W once t ≥ W − room × W / previous.
  const roomNow = limit - counts.current - cost;
  if (roomNow >= 0) {
    if (counts.previous === 0) return 0;
    const at = WINDOW_MS - Math.floor((roomNow * WINDOW_MS) / counts.previous);
    return Math.max(0, at - elapsed);
  }
  // Not before the next window, where this window's count is the previous one and fades the same way.
  const at = counts.current === 0 ? 0 : Math.max(0, WINDOW_MS - Math.floor(((limit - cost) * WINDOW_MS) / counts.current));
  return WINDOW_MS - elapsed + at;
}
