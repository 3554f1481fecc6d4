import type { BackendConfig } from '../../config/gateway-file';
import type { JsonObject } from '../ingress';

/**
 * A request of one API served by a backend of another (docs/protocols.md, "Translation"): the body
 * rewritten for the backend, and its answer rewritten back, JSON or stream, errors included.
 */
export interface Translation {
  /** 400 naming every field the backend's API cannot take (never dropped silently). */
  check(json: JsonObject): void;
  /** Path and query after the backend's base path. */
  target(backend: BackendConfig): string;
  /**
   * The JSON text to send. `outputTokens`: the output limit in force (the request's, lowered by strict
   * mode, or what was reserved when the request set none).
   */
  body(json: JsonObject, backend: BackendConfig, outputTokens: number): string;
  /** A translator for the answer to this request. */
  answer(json: JsonObject): AnswerTranslator;
}

/** Rewrites one answer of the backend into the client's API. */
export interface AnswerTranslator {
  /** A whole JSON answer (2xx). */
  json(body: JsonObject): unknown;
  /** One SSE event of the backend's stream (its text without the blank line): what to send the client, possibly ''. */
  event(text: string): string;
  /** What to send once the backend's stream has ended. */
  end(): string;
  /** Whether the client has had its stream's end marker (the answer is complete). */
  readonly done: boolean;
  /** An error answer of the backend (its status and parsed body, null when unreadable) in the client's error shape. */
  error(status: number, body: unknown): unknown;
}

/** The `data:` of an SSE event, parsed; null when it has none or it is not JSON. */
export function eventData(text: string): JsonObject | null {
  const data = text
    .split(/\r?\n/)
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trimStart())
    .join('\n');
  if (data === '' || data === '[DONE]') return null;
  try {
    const parsed: unknown = JSON.parse(data);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as JsonObject) : null;
  } catch {
    return null;
  }
}
