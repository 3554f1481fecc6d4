import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { TrustedLine } from '../common/logging/pino-logger';
import { ProxyEvents } from './proxy-event';

/**
 * One JSON log line per proxied request (docs/deployment.md), carrying `request_id` (the client's
 * `x-request-id` when it sent a valid one, else generated; also returned as `x-ditto-request-id` and
 * forwarded upstream), so a request can be followed from the client through the gateway to the
 * provider. Warn level for 5xx, info otherwise. No secrets: the event holds none, so the line skips
 * pino's redaction (TrustedLine).
 */
@Injectable()
export class ProxyAccessLogListener implements OnModuleInit {
  private readonly logger = new Logger('Access');

  constructor(private readonly events: ProxyEvents) {}

  onModuleInit(): void {
    this.events.on((event) => {
      const line = new TrustedLine({
        msg: `${event.method} ${event.path} ${event.status}`,
        request_id: event.requestId,
        key_id: event.keyId,
        model: event.model,
        backend: event.backend,
        status: event.status,
        latency_ms: event.latencyMs,
        upstream_ms: event.upstreamMs,
        tokens: event.charged?.tokens ?? null,
        cache: event.cache ?? undefined,
        aborted: event.aborted || undefined,
        error: event.error ?? undefined,
      });
      if (event.status >= 500) this.logger.warn(line);
      else this.logger.log(line);
    });
  }
}
