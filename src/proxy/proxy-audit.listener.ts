import { Injectable, OnModuleInit } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { ProxyEvent, ProxyEvents } from './proxy-event';

/** Kind of audit event for a proxied request (docs/audit.md). */
export function proxyAuditKind(event: ProxyEvent): string {
  if (event.error === null || event.status < 400) return 'proxy';
  return event.status === 502 || event.status === 504 || event.error.startsWith('upstream') ? 'proxy.error' : 'proxy.blocked';
}

/** Writes one audit event per proxied request, queued off the request path. */
@Injectable()
export class ProxyAuditListener implements OnModuleInit {
  constructor(
    private readonly events: ProxyEvents,
    private readonly audit: AuditService,
  ) {}

  onModuleInit(): void {
    this.events.on((event) =>
      this.audit.record({
        kind: proxyAuditKind(event),
        requestId: event.requestId,
        keyId: event.keyId,
        tenantId: event.tenantId,
        payload: {
          protocol: event.protocol ?? 'openai',
          method: event.method,
          path: event.path,
          model: event.model,
          backend: event.backend,
          status: event.status,
          usage: event.usage && {
            prompt_tokens: event.usage.promptTokens,
            completion_tokens: event.usage.completionTokens,
            cached_tokens: event.usage.cachedTokens,
            ...(event.usage.cacheWriteTokens !== undefined ? { cache_write_tokens: event.usage.cacheWriteTokens } : {}),
            total_tokens: event.usage.totalTokens,
            ...(event.usage.seconds !== undefined ? { seconds: event.usage.seconds } : {}),
            ...(event.usage.characters !== undefined ? { characters: event.usage.characters } : {}),
            ...(event.usage.images !== undefined ? { images: event.usage.images } : {}),
          },
          scopes: event.scopes,
          charged: event.charged && {
            tokens: event.charged.tokens,
            usd_micros: event.charged.usdMicros,
            basis: event.charged.basis,
            overshoot_tokens: event.charged.overshootTokens,
          },
          latency_ms: event.latencyMs,
          upstream_ms: event.upstreamMs,
          stream: event.stream,
          cached: event.cache === 'hit',
          aborted: event.aborted,
          attempts: event.attempts,
          error: event.error,
          ...(event.bodies ? { request_body: event.bodies.request, response_body: event.bodies.response } : {}),
          ...(event.realtime ? { realtime: { responses: event.realtime.responses, closed_by: event.realtime.closedBy, close_code: event.realtime.closeCode } } : {}),
        },
      }),
    );
  }
}
