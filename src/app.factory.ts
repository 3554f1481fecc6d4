import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoggerService, ValidationError, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { AppModule } from './app.module';
import { ErrorCode, GatewayError } from './common/errors/gateway-error';
import { AppConfig } from './app-config';
import { FrontDoor } from './common/http/front-door';
import { ConnectionDrain } from './health/connection-drain';
import { ProxyService } from './proxy/proxy.service';
import { RealtimeProxy } from './proxy/realtime';
import { errorBody } from './protocols/errors';
import { protocolOfRawTarget } from './protocols/ingresses';

/** Bodies of the admin API are small: never more than Fastify's own default, 1 MiB (nor BODY_LIMIT_BYTES). */
const ADMIN_BODY_LIMIT_BYTES = 1024 * 1024;

/**
 * Builds the application (not listening yet): Fastify, validation, OpenAPI for the admin API.
 * main.ts and the e2e tests both start the gateway through here.
 */
export async function createApp(config: AppConfig, logger: LoggerService): Promise<NestFastifyApplication> {
  // Every request enters through the front door: one canonical URL, timeouts, and /v1 served apart.
  const door = new FrontDoor({
    headersTimeoutMs: config.server.headersTimeoutMs,
    bodyTimeoutMs: config.server.bodyTimeoutMs,
    cors: config.server.cors,
    // A target refused before routing is answered in the shape of the API its prefix names.
    errorShapeFor: (rawTarget, requestId) => {
      const protocol = protocolOfRawTarget(rawTarget);
      return protocol === null ? undefined : (status, body) => errorBody(protocol, status, body, requestId);
    },
  });
  // return503OnClosing: false — during shutdown, requests on kept-alive connections are still served
  // (with `connection: close`) instead of a bare 503: the grace period of docs/deployment.md.
  const adapter = new FastifyAdapter({
    bodyLimit: Math.min(ADMIN_BODY_LIMIT_BYTES, config.server.bodyLimitBytes),
    trustProxy: true,
    return503OnClosing: false,
    serverFactory: (handler: (request: IncomingMessage, response: ServerResponse) => void) => door.createServer(handler),
    clientErrorHandler: door.clientError,
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    logger,
    abortOnError: false,
  });
  door.mount('/v1', app.get(ProxyService).handle);
  // Google's Gemini API (docs/protocols.md): the same orchestrator, which tells the APIs apart.
  door.mount('/v1beta', app.get(ProxyService).handle);
  const realtime = app.get(RealtimeProxy);
  door.mountUpgrade('/v1/realtime', realtime.handle);
  // Shutdown lets connections go one by one (main.ts): it sees every connection and request from the start.
  const connections = app.get(ConnectionDrain);
  connections.attach(app.getHttpServer());
  door.observe((request, response) => connections.track(request, response));
  // An upgraded connection is busy until it closes; realtime sessions are told to go away (1001) when the server closes.
  door.observeUpgrades((request) => connections.trackUpgrade(request.socket));
  connections.onClose(() => realtime.goAway());
  // A connection that never sent a byte has no request to finish, but the HTTP server does not count
  // it as idle and would wait for it (up to headersTimeout) on close: drop such connections first.
  app.getHttpAdapter().getInstance().addHook('preClose', (done) => {
    connections.dropSilent();
    done();
  });
  app.useGlobalPipes(
    new ValidationPipe({
      whitelist: true,
      forbidNonWhitelisted: true,
      transform: true,
      stopAtFirstError: false,
      // 400 invalid_request naming every problem, with the first offending field as OpenAI's `param`.
      exceptionFactory: (errors) => {
        const problems = flattenValidationErrors(errors);
        return new GatewayError(ErrorCode.InvalidRequest, problems.map((p) => p.message).join('; '), problems[0]?.field ?? null);
      },
    }),
  );
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Ditto Gateway admin API')
      .setDescription('Virtual keys, budgets, costs, audit and storage. Authenticate with ADMIN_TOKEN (read+write) or ADMIN_READ_TOKEN (GET only).')
      .setVersion('0.1.0')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
  // No enableShutdownHooks(): main.ts handles SIGTERM/SIGINT itself (drain first, then app.close()).
  return app;
}

/** class-validator errors as `field.path: message` pairs (nested DTOs prefixed with their parent field). */
function flattenValidationErrors(errors: ValidationError[], parent = ''): Array<{ field: string; message: string }> {
  return errors.flatMap((error) => {
    const field = parent ? `${parent}.${error.property}` : error.property;
    const own = Object.values(error.constraints ?? {}).map((message) => ({ field, message: parent ? `${parent}.${message}` : message }));
    return [...own, ...flattenValidationErrors(error.children ?? [], field)];
  });
}
