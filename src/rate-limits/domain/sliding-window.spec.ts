import { WINDOW_MS, WindowCounts, elapsedInWindow, fits, remaining, retryAfterMs, windowIndex } from './sliding-window';

/** The counters `dt` ms later, with nothing counted meanwhile (windows roll at multiples of W). */
function later(counts: WindowCounts, elapsed: number, dt: number): { counts: WindowCounts; elapsed: number } {
  const windows = Math.floor((elapsed + dt) / WINDOW_MS);
  const rolled = windows === 0 ? counts : windows === 1 ? { previous: counts.current, current: 0 } : { previous: 0, current: 0 };
  return { counts: rolled, elapsed: (elapsed + dt) % WINDOW_MS };
}

describe('sliding window counter', () => {
  it('numbers 60 s windows from the epoch', () => {
    expect(windowIndex(59_999)).toBe(0);
    expect(windowIndex(60_000)).toBe(1);
    expect(elapsedInWindow(60_000)).toBe(0);
    expect(elapsedInWindow(119_999)).toBe(59_999);
  });

  it('weighs the previous window by the part of it still inside the last 60 s', () => {
    const counts = { previous: 60, current: 10 };
    // At the boundary the previous window counts in full; halfway through, half of it.
    expect(remaining(counts, 100, 0)).toBe(30);
    expect(remaining(counts, 100, 30_000)).toBe(60);
    expect(remaining(counts, 100, 59_999)).toBe(89);
    expect(fits(counts, 100, 30, 0)).toBe(true);
    expect(fits(counts, 100, 31, 0)).toBe(false);
    expect(fits(counts, 100, 60, 30_000)).toBe(true);
    expect(fits(counts, 100, 61, 30_000)).toBe(false);
  });

  it('never reports less than nothing left', () => {
    expect(remaining({ previous: 0, current: 150 }, 100, 10_000)).toBe(0);
  });

  it('says when a full previous window has faded enough for one more request', () => {
    const counts = { previous: 60, current: 0 };
    expect(fits(counts, 60, 1, 0)).toBe(false);
    // 60 × (W − t) / W ≤ 59 once t ≥ 1 s.
    expect(retryAfterMs(counts, 60, 1, 0)).toBe(1000);
    expect(fits(counts, 60, 1, 999)).toBe(false);
    expect(fits(counts, 60, 1, 1000)).toBe(true);
    expect(retryAfterMs(counts, 60, 1, 400)).toBe(600);
  });

  it('waits for the next window when the current one alone is full', () => {
    const counts = { previous: 0, current: 60 };
    // At 10 s: 50 s to the boundary, then 60 → previous and 1 more fits after 1 s of it.
    expect(retryAfterMs(counts, 60, 1, 10_000)).toBe(51_000);
    expect(fits({ previous: 60, current: 0 }, 60, 1, 1000)).toBe(true);
  });

  it('answers 0 when it fits and Infinity when it never can', () => {
    expect(retryAfterMs({ previous: 10, current: 10 }, 100, 5, 0)).toBe(0);
    expect(retryAfterMs({ previous: 0, current: 0 }, 100, 101, 0)).toBe(Infinity);
    expect(retryAfterMs({ previous: 0, current: 0 }, 100, 100, 0)).toBe(0);
  });

  it('gives the exact first millisecond at which the request fits (randomised against a replay)', () => {
    let seed = 42;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let i = 0; i < 2000; i++) {
      const limit = 1 + random(500);
      const counts = { previous: random(limit + 1), current: random(limit + 1) };
      const cost = 1 + random(limit);
      const elapsed = random(WINDOW_MS);
      const wait = retryAfterMs(counts, limit, cost, elapsed);
      expect(Number.isFinite(wait)).toBe(true);
      const then = later(counts, elapsed, wait);
      expect(fits(then.counts, limit, cost, then.elapsed)).toBe(true);
      if (wait > 0) {
        const before = later(counts, elapsed, wait - 1);
        expect(fits(before.counts, limit, cost, before.elapsed)).toBe(false);
      } else {
        expect(fits(counts, limit, cost, elapsed)).toBe(true);
      }
    }
  });
});
