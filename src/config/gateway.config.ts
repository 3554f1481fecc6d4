import * as path from 'node:path';
import { getConfigToken } from '@nestjs/config';
import { z } from 'zod';
import { ConfigError } from './config-error';
import { EnvOf } from './config-slice';
import { optional, url } from './env-schema';
import { BackendConfig, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_UPSTREAM_TIMEOUT_MS, GatewayFile, loadGatewayFile } from './gateway-file';

export const DEFAULT_GATEWAY_CONFIG = './gateway.json';

/** The variables that locate the gateway file, or stand in for it. */
export const gatewayEnv = {
  GATEWAY_CONFIG: z.string().min(1).default(DEFAULT_GATEWAY_CONFIG),
  UPSTREAM_BASE_URL: url('http', 'https'),
  UPSTREAM_API_KEY: optional(z.string()),
};

/** Injection token of the loaded `gateway.json` (the `gateway` configuration namespace). */
export const GATEWAY = getConfigToken('gateway');

/**
 * `gateway.json` (backends, router, virtual keys, pricing) with its `${VAR}` placeholders resolved
 * from `raw`; without a file, `UPSTREAM_BASE_URL` (+ `UPSTREAM_API_KEY`) is one backend named `default`.
 * Only a file other than the default must exist (a copied .env.example names the default).
 */
export function loadGateway(env: EnvOf<typeof gatewayEnv>, raw: Readonly<Record<string, string | undefined>>): GatewayFile {
  const explicit = path.resolve(env.GATEWAY_CONFIG) !== path.resolve(DEFAULT_GATEWAY_CONFIG);
  const gateway = loadGatewayFile(env.GATEWAY_CONFIG, raw, explicit);
  if (env.UPSTREAM_BASE_URL && gateway.backends.length === 0) {
    gateway.backends = [defaultBackend(env.UPSTREAM_BASE_URL, env.UPSTREAM_API_KEY)];
    gateway.router.default_backends = ['default'];
  } else if (env.UPSTREAM_BASE_URL) {
    throw new ConfigError(['UPSTREAM_BASE_URL: set together with backends in the gateway config; use one or the other']);
  }
  return gateway;
}

function defaultBackend(baseUrl: string, apiKey: string | undefined): BackendConfig {
  return {
    name: 'default',
    type: 'openai',
    base_url: baseUrl,
    api_key: apiKey,
    connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
    first_byte_timeout_ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
    idle_timeout_ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
    weight: 1,
    model_map: {},
    pass_client_headers: false,
  };
}
