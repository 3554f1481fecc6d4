import 'reflect-metadata';
import type { Server } from 'node:http';
import { INestApplication } from '@nestjs/common';
import { createApp } from './app.factory';
import { loadAppConfig } from './app-config';
import { ConfigError } from './config/config-error';
import { readEnvironment } from './config/env-file';
import { PinoLogger } from './common/logging/pino-logger';
import { DrainState } from './health/drain-state';

async function main(): Promise<void> {
  const env = readEnvironment();
  let config;
  try {
    config = loadAppConfig(env);
  } catch (error) {
    const logger = new PinoLogger('info');
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) logger.pino.fatal({ context: 'Config' }, problem);
    logger.pino.fatal({ context: 'Config' }, `refusing to start: ${error.problems.length} configuration problem(s)`);
    process.exitCode = 1;
    return;
  }
  const logger = new PinoLogger(config.server.logLevel, undefined, config.server.logFormat);
  try {
    const app = await createApp(config, logger);
    await app.listen({ port: config.server.port, host: config.server.host });
    const address = app.getHttpServer().address();
    const port = typeof address === 'object' && address ? address.port : config.server.port;
    logger.log(`Ditto Gateway listening on http://${config.server.host}:${port}`, 'Bootstrap');
    stopGracefully(app, config.server.shutdownGraceMs, logger);
  } catch (error) {
    logger.pino.fatal({ context: 'Bootstrap' }, `start-up failed: ${(error as Error).message}`);
    process.exitCode = 1;
    // Pools or timers opened before the failure must not keep a failed process alive.
    setTimeout(() => process.exit(1), 1000).unref();
  }
}

/**
 * SIGTERM/SIGINT (DESIGN §8): `/ready` turns 503 at once and requests are still served for
 * SHUTDOWN_GRACE_MS, so the load balancer moves traffic away; then app.close() stops accepting
 * connections, lets in-flight requests and streams finish, flushes the audit queue and closes the
 * pools (Nest's shutdown hooks), and the process exits 0. A second signal skips the rest of the grace.
 */
function stopGracefully(app: INestApplication, graceMs: number, logger: PinoLogger): void {
  let skipGrace: () => void = () => undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} again: closing now`, 'Shutdown');
      skipGrace();
      return;
    }
    stopping = true;
    app.get(DrainState).start();
    logger.log(`${signal}: draining for ${graceMs} ms (/ready answers 503, requests are still served), then closing`, 'Shutdown');
    void new Promise<void>((resolve) => {
      skipGrace = resolve;
      setTimeout(resolve, graceMs);
    })
      .then(async () => {
        // close() drops the connections idle at that moment; a keep-alive connection whose request
        // (a long stream) ends later would hold the close open until the client's keep-alive timeout.
        const server = app.getHttpServer() as Server;
        const sweeper = setInterval(() => server.closeIdleConnections(), 100);
        try {
          await app.close();
        } finally {
          clearInterval(sweeper);
        }
      })
      .then(
        () => {
          logger.log('stopped: in-flight requests finished, audit flushed, storage closed', 'Shutdown');
          logger.flush();
          process.exit(0);
        },
        (error: Error) => {
          logger.pino.fatal({ context: 'Shutdown' }, `shutdown failed: ${error.message}`);
          logger.flush();
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

void main();
