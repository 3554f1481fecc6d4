/** Batches of the last few runs the cost model is fitted on. */
const SAMPLES = 8;

/**
 * The size of the retention job's next delete batch, from the time the last batches took: it fits
 * `ms ≈ fixed + perRow × rows` (least squares over the last few batches) and proposes the size that
 * takes `targetMs`, changing by at most a factor of two per batch so that one slow or fast outlier
 * (a checkpoint, a cold cache) cannot swing it from one end to the other.
 */
export class PruneBatchSizer {
  private readonly samples: Array<{ rows: number; ms: number }> = [];
  private current: number;

  constructor(
    initial: number,
    private readonly targetMs: number,
    private readonly min: number,
    private readonly max: number,
  ) {
    this.current = clamp(initial, min, max);
  }

  /** Rows to ask for in the next batch. */
  get size(): number {
    return this.current;
  }

  /** A batch asked for some rows and deleted `rows` of them in `ms`. */
  observe(rows: number, ms: number): void {
    if (rows <= 0) return;
    this.samples.push({ rows, ms: Math.max(0, ms) });
    if (this.samples.length > SAMPLES) this.samples.shift();
    const { fixed, perRow } = fit(this.samples);
    const proposed = perRow <= 0 ? this.current * 2 : (this.targetMs - fixed) / perRow;
    this.current = clamp(Math.round(clamp(proposed, this.current / 2, this.current * 2)), this.min, this.max);
  }
}

/** Least squares for ms = fixed + perRow × rows; with one distinct size, all of the time is per row. */
function fit(samples: ReadonlyArray<{ rows: number; ms: number }>): { fixed: number; perRow: number } {
  const n = samples.length;
  const meanRows = samples.reduce((s, x) => s + x.rows, 0) / n;
  const meanMs = samples.reduce((s, x) => s + x.ms, 0) / n;
  const spread = samples.reduce((s, x) => s + (x.rows - meanRows) ** 2, 0);
  if (spread > 0) {
    const perRow = samples.reduce((s, x) => s + (x.rows - meanRows) * (x.ms - meanMs), 0) / spread;
    const fixed = meanMs - perRow * meanRows;
    // A negative slope or intercept is noise on a busy machine: fall back to the plain average cost.
    if (perRow > 0 && fixed >= 0) return { fixed, perRow };
  }
  return { fixed: 0, perRow: meanMs / meanRows };
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}
