import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Metric, Registry, collectDefaultMetrics } from 'prom-client';
import { LabelledCounter, LabelledHistogram } from './labelled-metrics';

/**
 * The Prometheus registry of this instance (`GET /metrics`). One registry per application (not
 * prom-client's global one), so two gateways in one process — as the e2e tests run them — keep
 * their own numbers. Features create their metrics here, named `ditto_*`.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  /** Failed storage calls on the request path and in background jobs, by operation. */
  readonly storageErrors: Counter<'operation'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.storageErrors = this.counter('ditto_storage_errors_total', 'Storage calls that failed, by operation', ['operation']);
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  /** `collect`, when given, sets the value at scrape time (for values the owner already tracks). */
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = [], collect?: (gauge: Gauge<L>) => void): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry], ...(collect ? { collect() { collect(this); } } : {}) });
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }

  /** A counter whose label sets the caller looks up by its own key (for the request path: labelled-metrics.ts). */
  labelledCounter(name: string, help: string): LabelledCounter {
    return this.register(new LabelledCounter(name, help));
  }

  /** A histogram whose label sets the caller looks up by its own key (for the request path: labelled-metrics.ts). */
  labelledHistogram(name: string, help: string, buckets: readonly number[]): LabelledHistogram {
    return this.register(new LabelledHistogram(name, help, buckets));
  }

  private register<M extends LabelledCounter | LabelledHistogram>(metric: M): M {
    // The registry reads name, help, type, aggregator and get(), which these provide.
    this.registry.registerMetric(metric as unknown as Metric);
    return metric;
  }
}
