import { Counter, Histogram, Registry } from 'prom-client';
import { MetricsService } from './metrics.service';

/** The exposition of one metric (its HELP, TYPE and sample lines) from a registry's text. */
function section(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}`) || line.startsWith(`# HELP ${name} `) || line.startsWith(`# TYPE ${name} `));
}

describe('labelled metrics', () => {
  const observations: Array<[string, string, number]> = [
    ['/v1/chat/completions', 'a', 0.004],
    ['/v1/chat/completions', 'a', 0.01],
    ['/v1/chat/completions', 'b', 0.3],
    ['/v1/embeddings', 'a', 7],
    ['/v1/embeddings', 'a', 1e9],
    ['/v1/chat/completions', 'a', 0.0250001],
  ];
  const bounds = [0.005, 0.01, 0.025, 0.5, 10];

  it('expose what prom-client Histogram and Counter expose for the same observations', async () => {
    const ours = new MetricsService();
    const histogram = ours.labelledHistogram('t_seconds', 'A time', bounds);
    const counter = ours.labelledCounter('t_total', 'A count');
    const reference = new Registry();
    const refHistogram = new Histogram({ name: 't_seconds', help: 'A time', labelNames: ['route', 'backend'], buckets: bounds, registers: [reference] });
    const refCounter = new Counter({ name: 't_total', help: 'A count', labelNames: ['route', 'backend'], registers: [reference] });
    for (const [route, backend, value] of observations) {
      const key = `${route}\n${backend}`;
      (histogram.at(key) ?? histogram.add(key, { route, backend })).observe(value);
      (counter.at(key) ?? counter.add(key, { route, backend })).inc(2);
      refHistogram.observe({ route, backend }, value);
      refCounter.inc({ route, backend }, 2);
    }
    const text = await ours.registry.metrics();
    const expected = await reference.metrics();
    expect(section(text, 't_seconds')).toEqual(section(expected, 't_seconds'));
    expect(section(text, 't_total')).toEqual(section(expected, 't_total'));
    expect(section(text, 't_seconds')).toContain('t_seconds_bucket{le="+Inf",route="/v1/embeddings",backend="a"} 2');
    expect(section(text, 't_total')).toContain('t_total{route="/v1/chat/completions",backend="a"} 6');
  });

  it('never throws on the request path: a value that is not a finite number is not counted', async () => {
    const metrics = new MetricsService();
    const histogram = metrics.labelledHistogram('u_seconds', 'A time', bounds);
    const series = histogram.add('x', { route: 'x' });
    expect(() => series.observe(Number.NaN)).not.toThrow();
    series.observe(0.001);
    expect(section(await metrics.registry.metrics(), 'u_seconds')).toContain('u_seconds_count{route="x"} 1');
  });
});
