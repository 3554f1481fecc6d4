import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { createApp } from './app.factory';
import { loadAppConfig } from './app-config';
import { ConfigError } from './config/config-error';
import { readEnvironment } from './config/env-file';
import { PinoLogger } from './common/logging/pino-logger';
import { ConnectionDrain } from './health/connection-drain';
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
 * SIGTERM/SIGINT (docs/deployment.md): `/ready` turns 503 at once and requests are still served for
 * SHUTDOWN_GRACE_MS, so the load balancer moves traffic away; then the listener closes and the open
 * connections are let go one by one once their requests are answered (ConnectionDrain), app.close()
 * flushes the audit queue and closes the pools (Nest's shutdown hooks), and the process exits 0.
 * A second signal skips the rest of the grace and drops the connections still open.
 */
function stopGracefully(app: INestApplication, graceMs: number, logger: PinoLogger): void {
  let skipGrace: () => void = () => undefined;
  let stopping = false;
  const connections = app.get(ConnectionDrain);
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} again: closing now`, 'Shutdown');
      skipGrace();
      connections.destroyAll();
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
        await connections.close();
        await app.close();
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
