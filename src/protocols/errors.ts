import type { ServerResponse } from 'node:http';
import type { Logger } from '@nestjs/common';
import { OpenAiErrorBody } from '../common/errors/error-status';
import { sendRawError } from '../common/errors/gateway-exception.filter';
import type { ProtocolName } from './ingress';

/** Anthropic's error `type` for an HTTP status (docs.anthropic.com, "Errors"). */
const ANTHROPIC_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

/** Google's canonical status names (google.rpc.Code) for an HTTP status. */
const GOOGLE_STATUSES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  // A spent budget is a quota that ran out.
  402: 'RESOURCE_EXHAUSTED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  408: 'DEADLINE_EXCEEDED',
  409: 'ABORTED',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  501: 'UNIMPLEMENTED',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

/**
 * The gateway's error (an OpenAI-shaped body) in the shape of the caller's API: Anthropic's
 * `{"type":"error","error":{"type","message"},"request_id"}`, Google's `{"error":{"code","message","status","details"}}`
 * with the gateway's code as the ErrorInfo reason. OpenAI's as it is.
 */
export function errorBody(protocol: ProtocolName, status: number, body: OpenAiErrorBody, requestId: string): unknown {
  const { message, code } = body.error;
  if (protocol === 'anthropic') {
    const type = ANTHROPIC_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
    return { type: 'error', error: { type, message }, request_id: requestId };
  }
  if (protocol === 'gemini') {
    const name = GOOGLE_STATUSES[status] ?? (status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION');
    return {
      error: {
        code: status,
        message,
        status: name,
        details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: code.toUpperCase(), domain: 'ditto-gateway' }],
      },
    };
  }
  return body;
}

/** sendRawError in the caller's protocol's error shape (same status, headers, masking of internal errors). */
export function sendProtocolError(
  protocol: ProtocolName,
  request: { method?: string; url?: string },
  response: ServerResponse,
  headers: Record<string, string | string[]>,
  exception: unknown,
  logger: Logger,
): void {
  if (protocol === 'openai') return sendRawError(request, response, headers, exception, logger);
  const requestId = String(headers['x-request-id'] ?? '');
  sendRawError(request, response, headers, exception, logger, (status, body) => errorBody(protocol, status, body, requestId));
}
