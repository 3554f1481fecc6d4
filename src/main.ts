import 'reflect-metadata';
import { createApp } from './app.factory';
import { loadAppConfig } from './config/app-config';
import { ConfigError } from './config/config-error';
import { readEnvironment } from './config/env-file';
import { PinoLogger } from './common/logging/pino-logger';

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
  const logger = new PinoLogger(config.server.logLevel);
  try {
    const app = await createApp(config, logger);
    await app.listen({ port: config.server.port, host: config.server.host });
    const address = app.getHttpServer().address();
    const port = typeof address === 'object' && address ? address.port : config.server.port;
    logger.log(`Ditto Gateway listening on http://${config.server.host}:${port}`, 'Bootstrap');
  } catch (error) {
    logger.pino.fatal({ context: 'Bootstrap' }, `start-up failed: ${(error as Error).message}`);
    process.exitCode = 1;
    // Pools or timers opened before the failure must not keep a failed process alive.
    setTimeout(() => process.exit(1), 1000).unref();
  }
}

void main();
