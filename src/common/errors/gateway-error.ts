/**
 * Every failure a feature reports is a GatewayError with a code from this enum. The global filter
 * maps codes to HTTP statuses and OpenAI's error body; code never depends on the transport.
 */
export enum ErrorCode {
  InvalidRequest = 'invalid_request',
  InvalidApiKey = 'invalid_api_key',
  AdminUnauthorized = 'admin_unauthorized',
  AdminForbidden = 'admin_forbidden',
  AdminDisabled = 'admin_disabled',
  KeyDisabled = 'key_disabled',
  KeyExpired = 'key_expired',
  ModelNotAllowed = 'model_not_allowed',
  /** A model id in the path (`/v1/models/{id}`) the key may not see: OpenAI's answer for a model you cannot see. */
  ModelNotFound = 'model_not_found',
  RouteNotAllowed = 'route_not_allowed',
  BatchNotAllowed = 'batch_not_allowed',
  EphemeralKeyNotAllowed = 'ephemeral_key_not_allowed',
  OriginNotAllowed = 'origin_not_allowed',
  BudgetExceeded = 'budget_exceeded',
  CostBudgetExceeded = 'cost_budget_exceeded',
  CostUnknownModel = 'cost_unknown_model',
  RateLimited = 'rate_limited',
  RequestTooLarge = 'request_too_large',
  RequestTimeout = 'request_timeout',
  HeadersTooLarge = 'request_headers_too_large',
  MethodNotAllowed = 'method_not_allowed',
  UpgradeRequired = 'upgrade_required',
  UnsupportedMediaType = 'unsupported_media_type',
  ServerBusy = 'server_busy',
  NotFound = 'not_found',
  Conflict = 'conflict',
  BackendError = 'backend_error',
  BackendTimeout = 'backend_timeout',
  StorageUnavailable = 'storage_unavailable',
  ShuttingDown = 'shutting_down',
  InternalError = 'internal_error',
}

export class GatewayError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Name of the offending request field, when there is one (OpenAI's `param`). */
    readonly param: string | null = null,
    /** OpenAI's error `type` when it is not the code's usual one (rate limits: `requests` or `tokens`). */
    readonly type: string | null = null,
    /** Response headers the answer needs (`allow` on a 405, `retry-after` on a 429 or 503). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}
