import { getConfigToken } from '@nestjs/config';
import { z } from 'zod';
import type { GatewayFile } from './gateway-file';

export type EnvShape = z.ZodRawShape;
export type EnvOf<S extends EnvShape> = z.output<z.ZodObject<S>>;

/** What a slice may read besides its own variables: the loaded gateway file (backends, keys, pricing). */
export interface SliceContext {
  gateway: GatewayFile;
}

/**
 * One typed configuration namespace, owned by the feature that reads it: the environment variables it
 * declares (zod), the cross-checks between them, and how its value is built. Registered with
 * `@nestjs/config` under `namespace` (`registerAs`); features inject it with
 * `@Inject(slice.KEY) config: ConfigType<typeof slice>`.
 */
export interface ConfigSlice<N extends string = string, S extends EnvShape = EnvShape, T = unknown> {
  (env: EnvOf<S>, context: SliceContext): T;
  readonly namespace: N;
  /** The injection token of the namespace, as `registerAs(namespace, …).KEY`. */
  readonly KEY: string;
  readonly env: S;
  /** Problems that no single variable's schema can see (one line each, naming the variable). */
  readonly check: (env: EnvOf<S>) => string[];
}

export function defineConfig<N extends string, S extends EnvShape, T>(
  namespace: N,
  env: S,
  build: (env: EnvOf<S>, context: SliceContext) => T,
  check: (env: EnvOf<S>) => string[] = () => [],
): ConfigSlice<N, S, T> {
  return Object.assign((values: EnvOf<S>, context: SliceContext) => build(values, context), { namespace, KEY: getConfigToken(namespace), env, check });
}
