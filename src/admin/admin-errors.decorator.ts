import { applyDecorators } from '@nestjs/common';
import { ApiBearerAuth, ApiProperty, ApiResponse } from '@nestjs/swagger';

class OpenAiErrorDetail {
  @ApiProperty({ example: 'invalid admin token' }) message: string;
  @ApiProperty({ example: 'invalid_request_error' }) type: string;
  @ApiProperty({ example: 'admin_unauthorized' }) code: string;
  @ApiProperty({ example: null, nullable: true, type: String }) param: string | null;
}

export class OpenAiErrorResponse {
  @ApiProperty({ type: OpenAiErrorDetail }) error: OpenAiErrorDetail;
}

const DESCRIPTIONS: Record<number, string> = {
  400: 'invalid_request: malformed JSON, unknown or invalid fields (the message names them)',
  401: 'admin_unauthorized: missing or wrong admin token',
  403: 'admin_forbidden: the read-only token cannot change anything',
  404: 'not_found, or admin_disabled when no admin token is configured',
  409: 'conflict: the id or token is already in use',
  413: 'request_too_large: body above BODY_LIMIT_BYTES',
};

/** OpenAI-shaped error responses a route can give, beyond those every admin route has. */
export function AdminErrors(...statuses: number[]): MethodDecorator & ClassDecorator {
  return applyDecorators(
    ...statuses.map((status) => ApiResponse({ status, description: DESCRIPTIONS[status], type: OpenAiErrorResponse })),
  );
}

/** For admin controllers: bearer auth, and the 401/404 every admin route can answer. */
export function AdminApi(): ClassDecorator {
  return applyDecorators(ApiBearerAuth(), AdminErrors(401, 404));
}
