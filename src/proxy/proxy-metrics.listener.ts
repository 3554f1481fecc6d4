import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { serverConfig } from '../config/server.config';
import { MetricsService } from '../metrics/metrics.service';
import { ProxyEvent, ProxyEvents } from './proxy-event';

/** Paths with their own label; anything else under /v1 is `/v1/other`, so cardinality stays bounded. */
const ROUTES = new Set([
  '/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses', '/v1/models', '/v1/moderations',
  '/v1/audio/transcriptions', '/v1/audio/translations', '/v1/audio/speech', '/v1/images/generations', '/v1/realtime',
  '/v1/messages', '/v1/messages/count_tokens',
]);
/** Gemini's routes name the model in the path: labelled by their method, the model left out. */
const GEMINI_ROUTE = /^\/v1beta\/models\/[^/]+:(generateContent|streamGenerateContent|countTokens)$/;
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const OVERHEAD_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export function routeLabel(path: string): string {
  if (ROUTES.has(path)) return path;
  const gemini = GEMINI_ROUTE.exec(path);
  if (gemini) return `/v1beta/models/*:${gemini[1]}`;
  return path.startsWith('/v1beta') ? '/v1beta/other' : '/v1/other';
}

/**
 * Prometheus metrics of the proxy (docs/deployment.md), from the ProxyEvents every request emits: requests by
 * route/status/backend, latency split into upstream time and the gateway's own overhead, refusals by
 * code, tokens and cost charged. Labels are bounded: routes from a fixed list, backends from the
 * config, statuses and error codes from finite sets; key ids only with METRICS_KEY_LABELS=true.
 */
@Injectable()
export class ProxyMetricsListener implements OnModuleInit {
  constructor(
    private readonly events: ProxyEvents,
    private readonly metrics: MetricsService,
    @Inject(serverConfig.KEY) private readonly server: ConfigType<typeof serverConfig>,
  ) {}

  onModuleInit(): void {
    const keyLabels = this.server.metricsKeyLabels;
    const m = this.metrics;
    // Labelled metrics: each label set's series is looked up by a key string of its values (labelled-metrics.ts).
    const requests = m.labelledCounter('ditto_proxy_requests_total', 'Proxied requests by route, status, backend and the API the client spoke');
    const duration = m.labelledHistogram('ditto_proxy_request_duration_seconds', 'Time from request to the end of the response', SECONDS);
    const upstream = m.labelledHistogram('ditto_proxy_upstream_duration_seconds', 'Time the upstream took, from sending the request to the end of its body', SECONDS);
    const overhead = m.labelledHistogram('ditto_proxy_overhead_seconds', "The gateway's own time per request (total minus upstream)", OVERHEAD_SECONDS);
    const refusals = m.counter('ditto_proxy_refusals_total', 'Requests the gateway refused itself (auth, allow-list, budget, size…), by error code', ['code']);
    const tokens = m.labelledCounter('ditto_tokens_charged_total', 'Tokens charged to budgets');
    const cost = m.labelledCounter('ditto_cost_charged_usd_micros_total', 'Cost charged to budgets, USD micros');
    const aborted = m.counter('ditto_proxy_client_aborts_total', 'Requests the client abandoned before the response ended', ['route']);

    this.events.on((event: ProxyEvent) => {
      const route = routeLabel(event.path);
      const backend = event.backend ?? 'none';
      const status = String(event.status);
      const protocol = event.protocol ?? 'openai';
      const keyId = keyLabels ? (event.keyId ?? 'none') : '';
      const counted = `${route}\n${status}\n${backend}\n${protocol}\n${keyId}`;
      (requests.at(counted) ?? requests.add(counted, { route, status, backend, protocol, ...(keyLabels ? { key_id: keyId } : {}) })).inc();
      const timed = `${route}\n${backend}`;
      (duration.at(timed) ?? duration.add(timed, { route, backend })).observe(event.latencyMs / 1000);
      if (event.upstreamMs !== null) {
        (upstream.at(backend) ?? upstream.add(backend, { backend })).observe(event.upstreamMs / 1000);
        (overhead.at(route) ?? overhead.add(route, { route })).observe(Math.max(0, event.latencyMs - event.upstreamMs) / 1000);
      }
      if (event.error !== null && event.backend === null) refusals.inc({ code: event.error });
      if (event.aborted) aborted.inc({ route });
      if (event.charged) {
        (tokens.at(backend) ?? tokens.add(backend, { backend })).inc(event.charged.tokens);
        (cost.at(backend) ?? cost.add(backend, { backend })).inc(event.charged.usdMicros);
      }
    });
  }
}
