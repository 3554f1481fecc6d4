import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { sendError } from '../common/errors/gateway-exception.filter';
import { ProxyService } from './proxy.service';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'] as const;

/**
 * Registers `/v1/*` directly on Fastify rather than as a Nest controller: the proxy needs none of
 * Nest's per-request machinery (guards, pipes, interceptors), and skipping it is most of the
 * difference to a bare undici proxy (docs/benchmarks.md). Errors are answered by the same function as
 * the global exception filter, so bodies are identical. Not part of the admin OpenAPI document.
 */
@Injectable()
export class ProxyRoutes implements OnModuleInit {
  private readonly logger = new Logger('Proxy');

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
  ) {}

  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    fastify.route({
      method: [...METHODS],
      url: '/v1/*',
      handler: async (request, reply) => {
        try {
          await this.proxy.handle(request, reply);
        } catch (error) {
          sendError(request, reply, error, this.logger);
        }
      },
      // Body parsing failures (malformed JSON, too large) happen before the handler.
      errorHandler: (error, request, reply) => sendError(request, reply, error, this.logger),
    });
  }
}
