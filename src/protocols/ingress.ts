import type { IncomingHttpHeaders } from 'node:http';
import type { MeteredRequest } from '../budgets/accounting.service';
import type { BackendConfig } from '../config/gateway-file';

/** The API a client speaks to the gateway (docs/protocols.md); recorded on every audit row as `protocol`. */
export type ProtocolName = 'openai' | 'anthropic' | 'gemini';

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Where a request carries its output limit, for strict mode's cap: a top-level member (`max_tokens`),
 * or a member of a top-level object (`generationConfig.maxOutputTokens`). Set when absent, lowered when
 * above the cap.
 */
export interface OutputLimitField {
  member: string;
  field?: string;
}

/**
 * One request of a non-OpenAI API, as each stage of the proxy needs to see it (the orchestrator in
 * src/proxy/proxy.service.ts asks it where OpenAI's API has a fixed answer).
 */
export interface ProtocolCall {
  protocol: Exclude<ProtocolName, 'openai'>;
  methods: readonly string[];
  /** The virtual key the client presented, in its API's way; undefined when none. */
  presentedKey(headers: IncomingHttpHeaders): string | undefined;
  /** Checks the body (400 naming what is wrong) and answers the model it asks for. */
  model(json: JsonObject | null): string;
  stream(json: JsonObject | null): boolean;
  /** The request as the budget stage meters it (in the OpenAI terms it estimates in). */
  metered(json: JsonObject | null, model: string): Pick<MeteredRequest, 'path' | 'body'>;
  outputLimit: OutputLimitField | null;
  /** Whether a backend can serve this call (one that speaks the same API). */
  reaches(backend: BackendConfig): boolean;
  /** The path and query to send to `backend` after its base path. */
  upstreamTarget(backend: BackendConfig): string;
}

/** The prefix a protocol's URLs start with, and the call a path after it names (404 when none). */
export interface Ingress {
  protocol: Exclude<ProtocolName, 'openai'>;
  prefix: string;
  /** `target` is the path after the prefix, with its query, already checked (src/proxy/path-safety.ts). */
  call(target: string): ProtocolCall;
}
