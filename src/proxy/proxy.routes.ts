import type { IncomingMessage, ServerResponse } from 'node:http';
import { Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { ProxyService } from './proxy.service';

/**
 * Serves `/v1/*` on Node's own request and response objects: the front door (the HTTP server Fastify
 * is given through its serverFactory) hands these requests here instead of to Fastify, so they never
 * enter Fastify's routing, hooks, request/reply objects and content-type parsing, or Nest's
 * middleware. That machinery cost about 40 µs of CPU per request, a fifth of a governed request
 * (docs/benchmarks.md), and the proxy uses none of it. Not part of the admin OpenAPI document.
 */
@Injectable()
export class ProxyRoutes {
  /** Set when the server starts closing: responses then carry `connection: close`, as Fastify's do. */
  private closing = false;

  constructor(
    adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
  ) {
    adapterHost.httpAdapter.getInstance<FastifyInstance>().addHook('preClose', (done) => {
      this.closing = true;
      done();
    });
  }

  readonly serve = (request: IncomingMessage, response: ServerResponse): void => {
    if (this.closing && request.httpVersionMajor < 2) response.setHeader('connection', 'close');
    void this.proxy.handle(request, response);
  };
}
