import { DynamicModule } from '@nestjs/common';
import { ConfigModule, ConfigObject, registerAs } from '@nestjs/config';
import { z } from 'zod';
import { ConfigError, formatPath } from './config-error';
import { ConfigSlice } from './config-slice';
import { GatewayFile } from './gateway-file';
import { gatewayEnv, loadGateway } from './gateway.config';

type AnySlice = ConfigSlice<string, any, any>;

/** Every namespace's value, by namespace: what `@nestjs/config` serves, and what tests read directly. */
export type LoadedConfig<S extends readonly AnySlice[]> = { gateway: GatewayFile } & { [K in S[number] as K['namespace']]: ReturnType<K> };

/**
 * Validates `raw` (process.env plus `.env` in main.ts; an explicit map in tests, so two applications
 * in one process can differ) against the variables of every slice as ONE schema, reporting every
 * problem at once (one line each, naming the variable or JSON path; URL values never echoed), then
 * loads `gateway.json` and builds each slice's typed value. Throws ConfigError.
 */
export function loadConfig<const S extends readonly AnySlice[]>(raw: Readonly<Record<string, string | undefined>>, slices: S): LoadedConfig<S> {
  const shape = Object.assign({}, gatewayEnv, ...slices.map((slice) => slice.env));
  // Empty = unset = default, for every variable (a copied .env.example leaves many empty).
  const result = z.object(shape).safeParse(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== '')));
  if (!result.success) throw new ConfigError(result.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`));
  const env = result.data as Record<string, unknown>;
  const problems = slices.flatMap((slice) => slice.check(env));
  if (problems.length > 0) throw new ConfigError(problems);
  const gateway = loadGateway(env as z.output<z.ZodObject<typeof gatewayEnv>>, raw);
  const loaded: Record<string, unknown> = { gateway };
  for (const slice of slices) loaded[slice.namespace] = slice(env, { gateway });
  return loaded as LoadedConfig<S>;
}

/**
 * `@nestjs/config` serving the loaded namespaces (`registerAs` each) to the whole application. It
 * reads neither `.env` nor process.env itself: `loadConfig` has done that once, validated.
 */
export function configModule(loaded: Record<string, unknown>): Promise<DynamicModule> {
  return ConfigModule.forRoot({
    isGlobal: true,
    ignoreEnvFile: true,
    validatePredefined: false,
    skipProcessEnv: true,
    load: Object.entries(loaded).map(([namespace, value]) => registerAs(namespace, () => value as ConfigObject)),
  });
}
