import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Pool } from 'undici';
import { BackendConfig } from '../config/gateway-file';
import { basePathOf } from '../protocols/backend-types';

export interface Upstream {
  pool: Pool;
  /** Path prefix of the backend's base_url (`/v1`; an empty one: its type's, docs/protocols.md), prepended to the client's path after `/v1`. */
  basePath: string;
}

/**
 * One keep-alive undici pool per backend, created on first use and closed at shutdown; its
 * `connect_timeout_ms` bounds each new connection (TCP and TLS).
 */
@Injectable()
export class UpstreamPools implements OnApplicationShutdown {
  private readonly upstreams = new Map<string, Upstream>();

  for(backend: BackendConfig): Upstream {
    let upstream = this.upstreams.get(backend.name);
    if (!upstream) {
      const url = new URL(backend.base_url);
      upstream = {
        pool: new Pool(url.origin, { connections: 256, keepAliveTimeout: 30_000, connect: { timeout: backend.connect_timeout_ms } }),
        basePath: basePathOf(backend),
      };
      this.upstreams.set(backend.name, upstream);
    }
    return upstream;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.upstreams.values()].map((u) => u.pool.close()));
    this.upstreams.clear();
  }
}
