import { ErrorCode } from './gateway-error';

/** HTTP status and OpenAI error `type` for each code (docs/proxy.md). */
export const ERROR_HTTP: Record<ErrorCode, { status: number; type: string }> = {
  [ErrorCode.InvalidRequest]: { status: 400, type: 'invalid_request_error' },
  [ErrorCode.InvalidApiKey]: { status: 401, type: 'invalid_request_error' },
  [ErrorCode.AdminUnauthorized]: { status: 401, type: 'invalid_request_error' },
  [ErrorCode.AdminForbidden]: { status: 403, type: 'permission_error' },
  [ErrorCode.AdminDisabled]: { status: 404, type: 'invalid_request_error' },
  [ErrorCode.KeyDisabled]: { status: 403, type: 'permission_error' },
  [ErrorCode.KeyExpired]: { status: 403, type: 'permission_error' },
  [ErrorCode.ModelNotAllowed]: { status: 403, type: 'permission_error' },
  [ErrorCode.ModelNotFound]: { status: 404, type: 'invalid_request_error' },
  [ErrorCode.RouteNotAllowed]: { status: 403, type: 'permission_error' },
  [ErrorCode.BatchNotAllowed]: { status: 403, type: 'permission_error' },
  [ErrorCode.EphemeralKeyNotAllowed]: { status: 403, type: 'permission_error' },
  [ErrorCode.OriginNotAllowed]: { status: 403, type: 'permission_error' },
  [ErrorCode.BudgetExceeded]: { status: 402, type: 'insufficient_quota' },
  [ErrorCode.CostBudgetExceeded]: { status: 402, type: 'insufficient_quota' },
  [ErrorCode.CostUnknownModel]: { status: 402, type: 'insufficient_quota' },
  // OpenAI answers its rate limits with type `requests` or `tokens` (the limit that was hit).
  [ErrorCode.RateLimited]: { status: 429, type: 'requests' },
  [ErrorCode.RequestTooLarge]: { status: 413, type: 'invalid_request_error' },
  [ErrorCode.RequestTimeout]: { status: 408, type: 'invalid_request_error' },
  [ErrorCode.HeadersTooLarge]: { status: 431, type: 'invalid_request_error' },
  [ErrorCode.MethodNotAllowed]: { status: 405, type: 'invalid_request_error' },
  [ErrorCode.UpgradeRequired]: { status: 426, type: 'invalid_request_error' },
  [ErrorCode.UnsupportedMediaType]: { status: 415, type: 'invalid_request_error' },
  [ErrorCode.ServerBusy]: { status: 503, type: 'api_error' },
  [ErrorCode.NotFound]: { status: 404, type: 'invalid_request_error' },
  [ErrorCode.Conflict]: { status: 409, type: 'invalid_request_error' },
  [ErrorCode.BackendError]: { status: 502, type: 'api_error' },
  [ErrorCode.BackendTimeout]: { status: 504, type: 'api_error' },
  [ErrorCode.StorageUnavailable]: { status: 503, type: 'api_error' },
  [ErrorCode.ShuttingDown]: { status: 503, type: 'api_error' },
  [ErrorCode.InternalError]: { status: 500, type: 'api_error' },
};

export interface OpenAiErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}
