import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { sendRawError } from '../common/errors/gateway-exception.filter';
import { AppConfig } from '../config/app-config';
import { ConnectionDrain } from '../health/connection-drain';
import { readProxyBody } from './proxy-body';
import { ProxyService } from './proxy.service';

/** Requests under this prefix are the proxy's; everything else is Fastify's (admin API, health, docs). */
const PROXY_PREFIX = '/v1/';

/**
 * Serves `/v1/*` on Node's own request and response objects, ahead of Fastify: the HTTP server's
 * request listener is wrapped so that proxy requests never enter Fastify's routing, hooks,
 * request/reply objects and content-type parsing, or Nest's middleware. That machinery cost about
 * 40 µs of CPU per request, a fifth of a governed request (docs/benchmarks.md), and the proxy uses none
 * of it. Everything else (admin API, health, metrics, docs, unknown paths) is Fastify's as before.
 * Errors are answered by the same function as the global exception filter, so bodies are identical;
 * not part of the admin OpenAPI document.
 */
@Injectable()
export class ProxyRoutes implements OnModuleInit {
  private readonly logger = new Logger('Proxy');
  /** Set when the server starts closing: responses then carry `connection: close`, as Fastify's do. */
  private closing = false;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
    private readonly config: AppConfig,
    private readonly connections: ConnectionDrain,
  ) {}

  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const server: Server = fastify.server;
    const others = server.listeners('request') as RequestListener[];
    if (others.length !== 1) throw new Error(`expected Fastify's one request listener on the HTTP server, found ${others.length}`);
    const [fastifyListener] = others;
    server.removeListener('request', fastifyListener);
    // This listener sees every request first: the shutdown's connection handling starts here too.
    this.connections.attach(server);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      this.connections.track(request, response);
      if (request.url?.startsWith(PROXY_PREFIX)) void this.serve(request, response);
      else fastifyListener.call(server, request, response);
    });
    fastify.addHook('preClose', (done) => {
      this.closing = true;
      done();
    });
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (this.closing && request.httpVersionMajor < 2) response.setHeader('connection', 'close');
    try {
      const body = await readProxyBody(request, this.config.server.bodyLimitBytes);
      await this.proxy.handle(request, response, body);
    } catch (error) {
      // A body refused before its end (too large) is not read further: close rather than drain it.
      if (!request.complete && !response.headersSent) response.setHeader('connection', 'close');
      sendRawError(request, response, {}, error, this.logger);
    }
  }
}
