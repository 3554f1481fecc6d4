import { once } from 'node:events';
import { Readable, Transform, Writable } from 'node:stream';
import { BrotliCompress, Gzip, constants, createBrotliCompress, createBrotliDecompress, createGunzip, createGzip, createInflate } from 'node:zlib';
import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { Dispatcher } from 'undici';
import { writeJson } from '../common/errors/gateway-exception.filter';
import { mergedVary } from '../common/http/cors';
import { CachedResponse } from '../cache/domain/cached-response';
import { RequestCache } from '../cache/request-cache';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { modelAllowed } from '../virtual-keys/key-admission';
import { Exchange, Headers, drained } from './exchange';
import { JsonUsageFinder } from './json-usage-finder';
import { SseUsageTap } from './sse-usage-tap';
import { UpstreamAnswer, describeFailure } from './upstream-dispatch';
import { proxyConfig } from './proxy.config';
import { ResponseObject, Usage, unitUsage } from './domain/usage';
import { SubtitleDuration } from './subtitle-duration';
import { UsageDialect, usageDialect } from '../protocols/usage';

const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-authenticate', 'trailer', 'upgrade']);

/** A decoder for the content codings the gateway reads usage through (zstd is not in Node 20's zlib). */
export function decoderFor(coding: string): Transform | null {
  if (coding === 'gzip' || coding === 'x-gzip') return createGunzip();
  if (coding === 'deflate') return createInflate();
  if (coding === 'br') return createBrotliDecompress();
  return null;
}

/** A JSON answer smaller than this is sent as it is: compressing it would save next to nothing. */
const COMPRESS_MIN_BYTES = 1024;

/** Whether an answer may be compressed by the gateway: JSON or SSE, with a body, not tiny. */
function compressible(exchange: Exchange, response: Dispatcher.ResponseData, sse: boolean, json: boolean): boolean {
  if ((!sse && !json) || exchange.request.method === 'HEAD' || response.statusCode === 204 || response.statusCode === 304) return false;
  const length = response.headers['content-length'];
  return sse || length === undefined || Number(length) >= COMPRESS_MIN_BYTES;
}

/**
 * The compressor for a client's `accept-encoding`: gzip when it takes gzip (or `*`), else br; null
 * when it takes neither (q=0 counts as not taken). Brotli at quality 4: its default (11) costs far
 * more CPU than a relayed answer is worth.
 */
export function encoderFor(header: string | string[] | undefined): { coding: string; stream: Gzip | BrotliCompress; flush(): void } | null {
  const accepted = new Map<string, number>();
  for (const part of [header ?? []].flat().flatMap((value) => value.split(','))) {
    const [name, ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    if (!name) continue;
    const q = params.find((p) => p.startsWith('q='));
    accepted.set(name, q === undefined ? 1 : Number(q.slice(2)) || 0);
  }
  const takes = (coding: string) => (accepted.get(coding) ?? accepted.get('*') ?? 0) > 0;
  if (takes('gzip')) {
    const gzip = createGzip();
    return { coding: 'gzip', stream: gzip, flush: () => gzip.flush(constants.Z_SYNC_FLUSH) };
  }
  if (takes('br')) {
    const br = createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: 4 } });
    return { coding: 'br', stream: br, flush: () => br.flush() };
  }
  return null;
}

/** Reads usage from the decoded bytes of a response as they go by; answers what to send on. */
interface UsageWatcher {
  push(chunk: Buffer): Buffer;
  readonly usage: Usage | null;
  /** The Responses object the answer names (JSON and SSE), for background responses. */
  readonly object?: ResponseObject;
}

/**
 * The proxy's relay stage: the upstream's answer to the client as it arrives (status and headers,
 * then the body: SSE event by event, anything else chunk by chunk), with the usage read on the way
 * from the decoded bytes whatever content coding the upstream used; the filtered model list; and
 * answers replayed from the cache.
 */
@Injectable()
export class ResponseRelay {
  private readonly compression: boolean;

  constructor(
    private readonly cache: RequestCache,
    @Inject(proxyConfig.KEY) config: ConfigType<typeof proxyConfig>,
  ) {
    this.compression = config.compress;
  }

  /**
   * Sends status, headers and body as they arrive; reads usage on the way. `strip`: the gateway asked
   * for a streamed usage chunk the client did not, which is taken out again (SseUsageTap); a
   * compressed stream is then decoded and sent to the client as it is rewritten, uncompressed.
   */
  async relay(exchange: Exchange, { response, backend }: UpstreamAnswer, strip: boolean): Promise<void> {
    const { event, abort } = exchange;
    const contentType = String(response.headers['content-type'] ?? '');
    const sse = contentType.includes('text/event-stream');
    const json = !sse && contentType.includes('json');
    const coding = String(response.headers['content-encoding'] ?? '').trim().toLowerCase();
    const encoded = coding !== '' && coding !== 'identity';
    const decoder = encoded ? decoderFor(coding) : null;
    // Compressed, and the gateway must change the text: decode, rewrite, send uncompressed.
    const decodeForClient = strip && sse && decoder !== null;
    const rewrite = strip && sse && (!encoded || decodeForClient);
    const meter = exchange.charge?.estimate.meter;
    // Where the backend's API reports usage (src/protocols/usage.ts); null: OpenAI's.
    const dialect = usageDialect(backend.type);
    const watcher: UsageWatcher | null = sse
      ? new SseUsageTap(strip && (decodeForClient || !encoded), dialect)
      : json
        ? wrapFinder(meter === 'images', dialect)
        : meter === 'audio-in'
          ? new SubtitleDuration()
          : null;
    // A cacheable answer is kept decoded (any client can be served it), up to the cache's entry bound.
    let kept: Buffer[] | null = exchange.cache && json && (!encoded || decoder) ? [] : null;
    let keptBytes = 0;
    const keep = (chunk: Buffer) => {
      if (kept === null) return;
      keptBytes += chunk.length;
      if (keptBytes > this.cache.maxEntryBytes) kept = null;
      else kept.push(chunk);
    };

    const raw = exchange.response;
    // COMPRESSION=on: an answer that reaches the client uncompressed is compressed here when it accepts that.
    const compressor = this.compression && (!encoded || decodeForClient) && compressible(exchange, response, sse, json) ? encoderFor(exchange.request.headers['accept-encoding']) : null;
    const headers = responseHeaders(exchange.headers, response.headers, backend.name, { rewritten: rewrite, decoded: decodeForClient });
    if (compressor) {
      delete headers['content-length'];
      headers['content-encoding'] = compressor.coding;
      headers.vary = headers.vary === undefined ? 'accept-encoding' : `${String(headers.vary)}, accept-encoding`;
      compressor.stream.pipe(raw);
    }
    // The front door may have set `vary: origin` (CORS): writeHead would replace it, so merge.
    if (headers.vary !== undefined) headers.vary = mergedVary(raw, headers.vary);
    raw.writeHead(response.statusCode, headers);
    // SSE: headers go out at once (clients wait for them); otherwise with the first body bytes, in one packet.
    if (sse) raw.flushHeaders();
    // What the body is written to: the client's response, or the compressor in front of it.
    const sink: Writable = compressor?.stream ?? raw;
    event.status = response.statusCode;
    // Encoded and not rewritten: the client gets the upstream's bytes, usage is read from a decoded copy.
    const sideDecoder = decoder && !decodeForClient ? decoder : null;
    let sideFailed = false;
    if (sideDecoder) {
      sideDecoder.on('data', (decoded: Buffer) => {
        watcher?.push(decoded);
        keep(decoded);
      });
      sideDecoder.on('error', () => (sideFailed = true));
    }
    const source: Readable = decodeForClient ? (response.body as Readable).pipe(decoder!) : (response.body as Readable);
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        let out = chunk;
        if (sideDecoder) {
          if (!sideFailed) sideDecoder.write(chunk);
        } else if (!encoded || decodeForClient) {
          out = watcher ? watcher.push(chunk) : chunk;
          keep(chunk);
        }
        exchange.keepHead(out);
        if (watcher instanceof SseUsageTap && watcher.done) exchange.relayed = true;
        if (out.length > 0 && !sink.write(out)) await drained(sink, abort);
        // A compressed stream is flushed event by event, so it stays live.
        if (sse && compressor) compressor.flush();
      }
      const rest = watcher instanceof SseUsageTap && !sideDecoder ? watcher.end() : undefined;
      exchange.relayed = true;
      sink.end(rest);
    } catch (error) {
      // Client gone, or the upstream failed mid-body: the status is already sent, so cut the response.
      if (!abort.aborted) event.error = `upstream ${describeFailure(error)} mid-response`;
      exchange.lost = true;
      compressor?.stream.destroy();
      raw.destroy();
    } finally {
      if (sideDecoder && !sideFailed) {
        sideDecoder.end();
        await once(sideDecoder, 'end').catch(() => (sideFailed = true));
        if (watcher instanceof SseUsageTap) watcher.end();
      }
      event.usage = sideFailed ? null : (watcher?.usage ?? null);
      if (!sideFailed && watcher?.object) exchange.answered = watcher.object;
      event.upstreamMs = Exchange.since(exchange.upstreamStarted);
    }
    if (exchange.cache && exchange.relayed && kept && !sideFailed) {
      const body = kept.length === 1 ? kept[0] : Buffer.concat(kept);
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
 * A JsonUsageFinder as a watcher: it reads the bytes and passes them on unchanged. `images`: an images
 * answer without usage (dall-e) is usage in images, one per item of its `data`. `dialect`: another
 * API's answer, read its way.
 */
function wrapFinder(images: boolean, dialect: UsageDialect | null): UsageWatcher {
  const finder = new JsonUsageFinder(dialect?.jsonKeys);
  return {
    push: (chunk) => {
      finder.push(chunk);
      return chunk;
    },
    get usage() {
      if (dialect) return dialect.fromJson(finder.values);
      const usage = finder.usage;
      return usage === null && images && finder.dataItems !== null ? unitUsage('images', finder.dataItems) : usage;
    },
    get object() {
      return finder.object;
    },
  };
}

/**
 * The upstream's response headers (hop-by-hop ones dropped) with the gateway's own on top, except the
 * upstream's `x-request-id` (the id its own support knows). When the gateway's rate limits applied,
 * its `x-ratelimit-*` set replaces the upstream's whole set, so the two never mix. The upstream's
 * `access-control-*` headers are dropped (an upstream that allows every origin must not open the
 * gateway to them; the front door sets the gateway's own). A rewritten body
 * loses its content-length; a decoded one its content-encoding too.
 */
function responseHeaders(
  own: Headers,
  upstream: Dispatcher.ResponseData['headers'],
  backend: string,
  body: { rewritten: boolean; decoded: boolean },
): Headers {
  const headers: Headers = {};
  const ownLimits = 'x-ratelimit-limit-requests' in own || 'x-ratelimit-limit-tokens' in own;
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
    if (body.rewritten && name === 'content-length') continue;
    if (body.decoded && name === 'content-encoding') continue;
    if (ownLimits && name.startsWith('x-ratelimit-')) continue;
    // Browser access is the gateway's decision (CORS_ALLOWED_ORIGINS), never the upstream's.
    if (name.startsWith('access-control-')) continue;
    headers[name] = value;
  }
  const upstreamId = headers['x-request-id'];
  Object.assign(headers, own);
  if (upstreamId !== undefined) headers['x-request-id'] = upstreamId;
  headers['x-ditto-backend'] = backend;
  return headers;
}
