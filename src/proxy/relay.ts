import { Injectable } from '@nestjs/common';
import { Dispatcher } from 'undici';
import { writeJson } from '../common/errors/gateway-exception.filter';
import { CachedResponse } from '../cache/domain/cached-response';
import { RequestCache } from '../cache/request-cache';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { modelAllowed } from '../virtual-keys/key-admission';
import { Exchange, Headers, drained } from './exchange';
import { SseUsageTap } from './sse-usage-tap';
import { UpstreamAnswer, describeFailure } from './upstream-dispatch';
import { Usage, usageFrom } from './usage';

const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-authenticate', 'trailer', 'upgrade']);
/** JSON responses larger than this are relayed without looking for usage. */
const USAGE_SCAN_MAX_BYTES = 8 * 1024 * 1024;

/**
 * The proxy's relay stage: the upstream's answer to the client as it arrives (status and headers,
 * then the body: SSE event by event, anything else chunk by chunk), with the usage read on the way;
 * the filtered model list; and answers replayed from the cache.
 */
@Injectable()
export class ResponseRelay {
  constructor(private readonly cache: RequestCache) {}

  /**
   * Sends status, headers and body as they arrive; reads usage on the way. `strip`: the gateway asked
   * for a streamed usage chunk the client did not, which is taken out again (SseUsageTap).
   */
  async relay(exchange: Exchange, { response, backend }: UpstreamAnswer, strip: boolean): Promise<void> {
    const { event, abort } = exchange;
    const contentType = String(response.headers['content-type'] ?? '');
    const sse = contentType.includes('text/event-stream');
    const tap = sse ? new SseUsageTap(strip) : null;
    const collected: Buffer[] | null = !sse && contentType.includes('json') ? [] : null;
    let collectedBytes = 0;

    const raw = exchange.response;
    raw.writeHead(response.statusCode, responseHeaders(exchange.headers, response.headers, backend.name, strip && sse));
    // SSE: headers go out at once (clients wait for them); otherwise with the first body bytes, in one packet.
    if (sse) raw.flushHeaders();
    event.status = response.statusCode;
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        if (collected && collectedBytes < USAGE_SCAN_MAX_BYTES) {
          collected.push(chunk);
          collectedBytes += chunk.length;
        }
        const out = tap ? tap.push(chunk) : chunk;
        exchange.keepHead(out);
        if (tap?.done) exchange.relayed = true;
        if (out.length > 0 && !raw.write(out)) await drained(raw, abort);
      }
      const rest = tap?.end();
      exchange.relayed = true;
      raw.end(rest);
    } catch (error) {
      // Client gone, or the upstream failed mid-body: the status is already sent, so cut the response.
      if (!abort.aborted) event.error = `upstream ${describeFailure(error)} mid-response`;
      raw.destroy();
    } finally {
      event.usage = tap?.usage ?? (collected && collectedBytes < USAGE_SCAN_MAX_BYTES ? usageFromBuffers(collected) : null);
      event.upstreamMs = Exchange.since(exchange.upstreamStarted);
    }
    if (exchange.cache && exchange.relayed && collected && collectedBytes < USAGE_SCAN_MAX_BYTES) {
      const body = collected.length === 1 ? collected[0] : Buffer.concat(collected);
      this.cache.keep(exchange.cache, { status: response.statusCode, contentType, body, usage: event.usage, backend: event.backend });
    }
  }

  /** `GET /v1/models` for a key with an allow-list: only the models it may use. */
  async relayModels(exchange: Exchange, { response }: UpstreamAnswer, key: VirtualKey): Promise<void> {
    const { event } = exchange;
    const body = (await response.body.json().catch(() => null)) as { data?: Array<{ id?: unknown }> } | null;
    event.status = response.statusCode;
    event.upstreamMs = Exchange.since(exchange.upstreamStarted);
    if (response.statusCode !== 200 || !Array.isArray(body?.data)) {
      writeJson(exchange.response, response.statusCode, exchange.headers, body);
      return;
    }
    const data = body.data.filter((m) => typeof m.id === 'string' && modelAllowed(key.models, m.id));
    exchange.headers['x-ditto-backend'] = event.backend ?? '';
    writeJson(exchange.response, 200, exchange.headers, { ...body, data });
  }

  /** Answers from the cache: the stored status, headers and body; usage as stored (settled as such when charged). */
  replay(exchange: Exchange, entry: CachedResponse): void {
    const { event } = exchange;
    event.status = entry.status;
    event.usage = entry.usage;
    exchange.relayed = true;
    exchange.response.writeHead(entry.status, { ...exchange.headers, ...entry.headers, 'content-length': entry.body.length });
    exchange.response.end(entry.body);
  }
}

/**
 * The upstream's response headers (hop-by-hop ones dropped) with the gateway's own on top, except the
 * upstream's `x-request-id` (the id its own support knows). When the gateway's rate limits applied,
 * its `x-ratelimit-*` set replaces the upstream's whole set, so the two never mix.
 */
function responseHeaders(own: Headers, upstream: Dispatcher.ResponseData['headers'], backend: string, bodyRewritten: boolean): Headers {
  const headers: Headers = {};
  const ownLimits = 'x-ratelimit-limit-requests' in own || 'x-ratelimit-limit-tokens' in own;
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
    if (bodyRewritten && name === 'content-length') continue;
    if (ownLimits && name.startsWith('x-ratelimit-')) continue;
    headers[name] = value;
  }
  const upstreamId = headers['x-request-id'];
  Object.assign(headers, own);
  if (upstreamId !== undefined) headers['x-request-id'] = upstreamId;
  headers['x-ditto-backend'] = backend;
  return headers;
}

function usageFromBuffers(chunks: Buffer[]): Usage | null {
  try {
    return usageFrom(JSON.parse(Buffer.concat(chunks).toString('utf8')));
  } catch {
    return null;
  }
}
