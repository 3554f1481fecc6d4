import { existsSync } from 'node:fs';
import { config as loadDotenv } from 'dotenv';

/**
 * The environment the gateway runs with: `.env` (if present) under the real environment, which wins.
 * The only place process.env is read.
 */
export function readEnvironment(): Record<string, string | undefined> {
  if (existsSync('.env')) loadDotenv({ path: '.env', override: false, quiet: true });
  return { ...process.env };
}
