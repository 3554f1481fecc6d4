import type { IncomingHttpHeaders } from 'node:http';
import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { cacheConfig } from './cache.config';
import { Usage } from '../proxy/domain/usage';
import { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { cacheBypassed, cacheKey, cacheScope, isCacheableRequest } from './cache-key';
import { CachedResponse } from './domain/cached-response';
import { ResponseCacheService } from './response-cache.service';

/** Where a response is to be kept once it has been relayed (a miss, or a `no-cache` bypass). */
export interface CacheTicket {
  hash: string;
  ttlMs: number;
  keyId: string;
  tenantId: string | null;
  model: string | null;
}

/** The cache's part in one request: its `x-ditto-cache` outcome, an entry to replay, where to store the answer. */
export interface CacheLookup {
  outcome: 'hit' | 'miss' | 'bypass';
  entry: CachedResponse | null;
  ticket: CacheTicket | null;
}

/** What the proxy saw of a request, as far as the cache is concerned. */
export interface CacheableRequest {
  method: string;
  /** The URL as sent (a query string makes a request uncacheable: the key is built from the path). */
  url: string;
  headers: IncomingHttpHeaders;
  json: Record<string, unknown> | null;
  model: string | null;
  /** The backends the request may be routed to. */
  backends: string[];
}

/**
 * The proxy's cache stage. A key whose TTL is 0, or a request that is not cacheable, is not looked at
 * (null: no lookup). `no-cache` skips the lookup but stores the fresh answer; `no-store` and
 * `x-ditto-cache-bypass: 1` neither look up nor store.
 */
@Injectable()
export class RequestCache {
  constructor(
    private readonly cache: ResponseCacheService,
    @Inject(cacheConfig.KEY) private readonly config: ConfigType<typeof cacheConfig>,
  ) {}

  /** PROXY_CACHE_CHARGE: a hit is admitted and charged its stored usage like any request (default: hits are free). */
  get chargesHits(): boolean {
    return this.config.charge;
  }

  /** Responses larger than this are never kept (PROXY_CACHE_MAX_ENTRY_BYTES): no need to collect them. */
  get maxEntryBytes(): number {
    return this.config.maxEntryBytes;
  }

  async lookup(key: VirtualKey, request: CacheableRequest): Promise<CacheLookup | null> {
    const ttlMs = this.cache.ttlMsFor(key);
    if (ttlMs === 0 || !isCacheableRequest(request.method, request.url, request.json)) return null;
    const hash = cacheKey({
      method: request.method,
      path: request.url,
      backends: request.backends,
      scope: cacheScope(key, this.config.scope),
      body: request.json,
    });
    const bypass = cacheBypassed(request.headers);
    const found = bypass ? null : await this.cache.lookup(hash);
    const store = !bypass || (!/no-store/i.test(String(request.headers['cache-control'] ?? '')) && request.headers['x-ditto-cache-bypass'] !== '1');
    return {
      outcome: bypass ? 'bypass' : found ? 'hit' : 'miss',
      entry: found?.entry ?? null,
      ticket: !found && store ? { hash, ttlMs, keyId: key.id, tenantId: key.tenantId, model: request.model } : null,
    };
  }

  /** Keeps a relayed 2xx JSON answer for later identical requests (the cache bounds its size). */
  keep(ticket: CacheTicket, answer: { status: number; contentType: string; body: Buffer; usage: Usage | null; backend: string | null }): void {
    if (answer.status < 200 || answer.status >= 300) return;
    const now = Date.now();
    this.cache.store(ticket.hash, {
      status: answer.status,
      headers: { 'content-type': answer.contentType, ...(answer.backend ? { 'x-ditto-backend': answer.backend } : {}) },
      body: answer.body,
      usage: answer.usage,
      keyId: ticket.keyId,
      tenantId: ticket.tenantId,
      model: ticket.model,
      storedAt: now,
      expiresAt: now + ticket.ttlMs,
    });
  }
}
