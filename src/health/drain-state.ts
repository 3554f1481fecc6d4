import { Injectable } from '@nestjs/common';

/**
 * Whether this instance is shutting down (docs/deployment.md): set on SIGTERM, read by `/ready`, which then
 * answers 503 so the load balancer stops sending new requests while the ones in flight finish.
 */
@Injectable()
export class DrainState {
  private since: number | null = null;

  get draining(): boolean {
    return this.since !== null;
  }

  start(): void {
    this.since ??= Date.now();
  }
}
