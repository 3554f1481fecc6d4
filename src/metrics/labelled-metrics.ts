interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/** What a prom-client Registry reads of a metric (`get()`). */
interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: MetricValue[];
}

/** One label set's count of a LabelledCounter. */
export class CounterSeries {
  value = 0;

  constructor(readonly labels: Readonly<Record<string, string>>) {}

  inc(by = 1): void {
    if (Number.isFinite(by) && by >= 0) this.value += by;
  }
}

/** One label set's buckets (not cumulative), sum and count. */
export class HistogramSeries {
  readonly buckets: number[];
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.buckets = new Array<number>(bounds.length).fill(0);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const { bounds } = this;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.buckets[i]++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }
}

/** Label sets looked up by the caller's key, created on first use. */
abstract class LabelledMetric<S extends { labels: Readonly<Record<string, string>> }> {
  abstract readonly type: string;
  /** How prom-client's cluster registry merges workers' values. */
  readonly aggregator = 'sum';
  protected readonly series = new Map<string, S>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  /** The series the caller knows as `key` (one key per distinct label set), if it was added. */
  at(key: string): S | undefined {
    return this.series.get(key);
  }

  /** Adds the series of `labels` under `key` (`metric.at(key) ?? metric.add(key, {…})`: no labels object per observation). */
  add(key: string, labels: Record<string, string>): S {
    const series = this.create(labels);
    this.series.set(key, series);
    return series;
  }

  reset(): void {
    this.series.clear();
  }

  get(): MetricJson {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() };
  }

  protected abstract create(labels: Record<string, string>): S;
  protected abstract values(): MetricValue[];
}

/**
 * A Prometheus counter for the request path, as LabelledHistogram (below) is a histogram: the caller
 * keeps its label sets' series, prom-client's Counter hashes a labels object on every increment.
 */
export class LabelledCounter extends LabelledMetric<CounterSeries> {
  readonly type = 'counter';

  protected create(labels: Record<string, string>): CounterSeries {
    return new CounterSeries(labels);
  }

  protected values(): MetricValue[] {
    return [...this.series.values()].map((s) => ({ value: s.value, labels: { ...s.labels }, metricName: this.name }));
  }
}

/**
 * A Prometheus histogram for the request path: the series of a label set is looked up once by the
 * caller's own key and observed directly, where prom-client's Histogram validates and hashes the labels
 * object on every observation (several µs per proxied request with four histograms and counters).
 * Registered in a prom-client Registry like its own metrics (the registry reads `get()`), with the same
 * exposition: cumulative `_bucket` lines with `le`, then `+Inf`, `_sum` and `_count`.
 */
export class LabelledHistogram extends LabelledMetric<HistogramSeries> {
  readonly type = 'histogram';

  constructor(
    name: string,
    help: string,
    private readonly bounds: readonly number[],
  ) {
    super(name, help);
  }

  protected create(labels: Record<string, string>): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }

  protected values(): MetricValue[] {
    const values: MetricValue[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.buckets[i];
        values.push({ value: cumulative, labels: { le, ...s.labels }, metricName: `${this.name}_bucket` });
      });
      values.push({ value: s.count, labels: { le: '+Inf', ...s.labels }, metricName: `${this.name}_bucket` });
      values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: { ...s.labels }, metricName: `${this.name}_count` });
    }
    return values;
  }
}
