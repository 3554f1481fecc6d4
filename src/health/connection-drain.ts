import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer, Socket } from 'node:net';
import { Injectable } from '@nestjs/common';

/** How long a connection must have been idle, once the listener is closed, before it is closed here. */
const IDLE_BEFORE_CLOSE_MS = 1000;
const SWEEP_EVERY_MS = 100;

interface Tracked {
  /** Requests on the connection whose response has not ended. */
  active: number;
  /** When the last response ended (or the connection opened). */
  idleSince: number;
}

/**
 * How the HTTP server lets go of its connections at shutdown (main.ts, after the drain), so that a
 * load balancer that keeps connections to the replicas (nginx `keepalive`) and re-sends a POST only
 * when no replica saw it (nginx `proxy_next_upstream error`) loses no request:
 * 1. The listening socket closes; open connections stay. A new connection is refused, and nginx sends
 *    that request to the other replica (and takes this one out for `fail_timeout`).
 * 2. From then on every response ends its connection (`connection: close`), the responses of requests
 *    in flight too when their headers are not written yet: the balancer stops reusing the connection
 *    after that response, instead of this server closing it under a request the balancer just sent.
 * 3. A connection is closed here only once it has been idle for IDLE_BEFORE_CLOSE_MS, by which time
 *    the balancer no longer sends to this replica. Then the server has no connection left.
 * Node's `server.close()` instead closes every idle keep-alive connection at once: under load, some of
 * them carry a request the balancer has just written and the server has not read yet, which is reset,
 * and nginx answers a reset POST with 502 (seen in test/e2e/nginx.e2e-spec.ts).
 */
@Injectable()
export class ConnectionDrain {
  private server: Server | null = null;
  private readonly sockets = new Map<Socket, Tracked>();
  private readonly responses = new Set<ServerResponse>();
  private closing = false;
  private readonly closeListeners: Array<() => unknown> = [];

  /** Starts tracking the connections of `server` (before it listens). */
  attach(server: Server): void {
    this.server = server;
    server.on('connection', (socket: Socket) => {
      this.sockets.set(socket, { active: 0, idleSince: Date.now() });
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /** Called for every request the server receives, before it is handled. */
  track(request: IncomingMessage, response: ServerResponse): void {
    const tracked = this.sockets.get(request.socket);
    if (tracked) tracked.active++;
    this.responses.add(response);
    if (this.closing) endsConnection(response);
    response.once('close', () => {
      this.responses.delete(response);
      if (!tracked) return;
      tracked.active--;
      tracked.idleSince = Date.now();
    });
  }

  /**
   * A connection an upgrade took over (a WebSocket session): busy until it closes, so the sweep below
   * never cuts it; it is ended by whoever owns it, told through `onClose`.
   */
  trackUpgrade(socket: Socket): void {
    const tracked = this.sockets.get(socket);
    if (!tracked) return;
    tracked.active++;
    socket.once('close', () => tracked.active--);
  }

  /** Calls `listener` when `close()` starts (upgraded connections' owners end them then). */
  onClose(listener: () => unknown): void {
    this.closeListeners.push(listener);
  }

  /**
   * Steps 1 to 3 above; resolves once the server has no connection left. In-flight requests and
   * streams run to their end.
   */
  async close(): Promise<void> {
    const server = this.server;
    if (!server?.listening) return;
    this.closing = true;
    for (const response of this.responses) endsConnection(response);
    for (const listener of this.closeListeners) void listener();
    const sweeper = setInterval(() => {
      const now = Date.now();
      for (const [socket, tracked] of this.sockets) {
        if (tracked.active === 0 && now - tracked.idleSince >= IDLE_BEFORE_CLOSE_MS) socket.destroy();
      }
    }, SWEEP_EVERY_MS);
    try {
      // net.Server#close: stops listening and calls back once every connection has ended.
      await new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()));
    } finally {
      clearInterval(sweeper);
    }
  }

  /** Drops the connections that never sent a byte: they have no request to finish. */
  dropSilent(): void {
    for (const socket of this.sockets.keys()) if (socket.bytesRead === 0) socket.destroy();
  }

  /** Drops every connection now (a second signal during shutdown). */
  destroyAll(): void {
    for (const socket of this.sockets.keys()) socket.destroy();
  }
}

function endsConnection(response: ServerResponse): void {
  if (!response.headersSent && response.req.httpVersionMajor < 2) response.setHeader('connection', 'close');
}
