import type { BackendConfig, BackendType } from '../config/gateway-file';

/** The API version sent to an `anthropic` backend when the client named none (the Anthropic SDKs' own). */
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

/** What the gateway must know of each API a backend may speak (docs/protocols.md, "Backend types"). */
export interface BackendKind {
  /**
   * The path put in front of a request's path when the backend's `base_url` has none: the base URL
   * is what that provider's SDK takes (`https://api.anthropic.com`, `https://generativelanguage.googleapis.com`),
   * and the type adds its API's prefix. OpenAI's base URLs carry `/v1` themselves (the openai SDK's
   * convention), so it adds nothing.
   */
  basePath: string;
  /** Client request headers this API reads and the upstream may see (everything else stays at the gateway). */
  clientHeaders: readonly string[];
  /** The backend's own credentials, in the header this API takes them in, and the headers it needs by default. */
  auth(apiKey: string | undefined): Record<string, string>;
}

const KINDS: Record<BackendType, BackendKind> = {
  openai: {
    basePath: '',
    clientHeaders: ['accept', 'user-agent', 'idempotency-key', 'openai-beta'],
    auth: (apiKey): Record<string, string> => (apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
  },
  anthropic: {
    basePath: '/v1',
    // anthropic-version picks the API's behaviour, anthropic-beta opts into features: both are the client's call.
    clientHeaders: ['accept', 'user-agent', 'anthropic-version', 'anthropic-beta'],
    auth: (apiKey) => ({ ...(apiKey ? { 'x-api-key': apiKey } : {}), 'anthropic-version': DEFAULT_ANTHROPIC_VERSION }),
  },
  gemini: {
    basePath: '/v1beta',
    clientHeaders: ['accept', 'user-agent'],
    auth: (apiKey): Record<string, string> => (apiKey ? { 'x-goog-api-key': apiKey } : {}),
  },
};

export function backendKind(backend: Pick<BackendConfig, 'type'>): BackendKind {
  return KINDS[backend.type ?? 'openai'];
}

/** The path prefix of a backend: its `base_url`'s own path, else its type's (`/v1`, `/v1beta`). */
export function basePathOf(backend: Pick<BackendConfig, 'type' | 'base_url'>): string {
  const own = new URL(backend.base_url).pathname.replace(/\/+$/, '');
  return own === '' ? backendKind(backend).basePath : own;
}
