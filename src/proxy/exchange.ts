import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import type { Charge } from '../budgets/accounting.service';
import type { RateAdmission } from '../rate-limits/rate-limits.service';
import type { CacheTicket } from '../cache/request-cache';
import type { VirtualKey } from '../virtual-keys/domain/virtual-key';
import type { ProtocolName } from '../protocols/ingress';
import { ProxyBody } from './proxy-body';
import { ProxyEvent } from './proxy-event';
import type { ResponseObject } from './domain/usage';

export type Headers = Record<string, string | string[]>;

/** AUDIT_LOG_BODIES keeps at most this much of each body. */
export const LOGGED_BODY_MAX_BYTES = 64 * 1024;

/**
 * Cancellation when the client goes away, as an EventEmitter: undici takes one as a request's signal,
 * and it costs next to nothing, where an AbortController with its listeners costs ~4 µs per request on
 * Node 20 (docs/benchmarks.md).
 */
export class ClientGone extends EventEmitter {
  aborted = false;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }
}

const NO_BODY: ProxyBody = { kind: 'none' };

/**
 * The state of one proxied request, from arrival to its one ProxyEvent: what each stage found out and
 * what must be undone or settled when it ends. The orchestrator (ProxyService) creates it and ends it
 * exactly once.
 */
export class Exchange {
  readonly started = performance.now();
  /** Headers of the gateway's own (request id, cache, rate limits), sent with whatever the answer is. */
  readonly headers: Headers;
  readonly event: ProxyEvent;
  /** Fires when the client goes away: cancels the upstream request and any wait on the client. */
  readonly abort = new ClientGone();
  body: ProxyBody = NO_BODY;
  key: VirtualKey | null = null;
  /** The API the client speaks: its errors are answered in that API's shape. */
  protocol: ProtocolName = 'openai';
  /** The client has had the whole response (all bytes, or an SSE stream's `[DONE]`): closing the
   * connection after that is not an abort. */
  relayed = false;
  /** A request was sent upstream (the upstream may have done work even if no answer came back). */
  dispatched = false;
  /** The request reached an upstream and no complete answer came back from it (timeout, reset, cut
   * mid-body): the work may have been done and billed, so it is charged (budgets' `lost` outcome). */
  lost = false;
  /** The Responses object the upstream's answer named (id, status, model), when it named one. */
  answered: ResponseObject | null = null;
  /** performance.now() when the current upstream attempt was sent. */
  upstreamStarted = 0;
  /** The budget/cost reservation to settle when the request ends; null for ungoverned requests. */
  charge: Charge | null = null;
  /** A rate-limited key's admission, corrected to the charge when the request ends. */
  rate: RateAdmission | null = null;
  /** Where to keep the response if it turns out cacheable. */
  cache: CacheTicket | null = null;
  /** AUDIT_LOG_BODIES: the first bytes of the response as relayed. */
  readonly responseHead: { chunks: Buffer[]; bytes: number } | null;

  constructor(
    readonly request: IncomingMessage,
    readonly response: ServerResponse,
    readonly requestId: string,
    logBodies: boolean,
  ) {
    // x-request-id is what OpenAI's SDKs read (`requestID`); x-ditto-request-id stays for existing clients.
    this.headers = { 'x-request-id': requestId, 'x-ditto-request-id': requestId };
    this.responseHead = logBodies ? { chunks: [], bytes: 0 } : null;
    this.event = {
      requestId,
      keyId: null,
      tenantId: null,
      method: request.method ?? 'GET',
      path: (request.url ?? '/').split('?')[0],
      model: null,
      backend: null,
      status: 0,
      usage: null,
      latencyMs: 0,
      upstreamMs: null,
      stream: false,
      aborted: false,
      attempts: [],
      error: null,
      scopes: [],
      charged: null,
      cache: null,
      bodies: null,
    };
    response.once('close', () => {
      if (!response.writableFinished) {
        this.event.aborted = !this.relayed;
        this.abort.abort();
      }
    });
  }

  speaks(protocol: ProtocolName): void {
    this.protocol = protocol;
    this.event.protocol = protocol;
  }

  identify(key: VirtualKey): void {
    this.key = key;
    this.event.keyId = key.id;
    this.event.tenantId = key.tenantId;
  }

  /** AUDIT_LOG_BODIES: appends to the kept head of the response, up to LOGGED_BODY_MAX_BYTES in all. */
  keepHead(chunk: Buffer): void {
    const kept = this.responseHead;
    if (kept === null) return;
    const head = chunk.subarray(0, LOGGED_BODY_MAX_BYTES - kept.bytes);
    if (head.length === 0) return;
    kept.chunks.push(head);
    kept.bytes += head.length;
  }

  /** Milliseconds since a performance.now() reading, to 0.1 ms. */
  static since(start: number): number {
    return Math.round((performance.now() - start) * 10) / 10;
  }
}

/** Resolves when `out` can take more data; rejects when the client goes away first. */
export function drained(out: Writable, gone: ClientGone): Promise<void> {
  if (gone.aborted) return Promise.reject(new Error('client gone'));
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      gone.off('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      out.off('drain', onDrain);
      reject(new Error('client gone'));
    };
    out.once('drain', onDrain);
    gone.once('abort', onAbort);
  });
}
