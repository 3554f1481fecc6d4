import { ExecutionContext, createParamDecorator } from '@nestjs/common';
import type { AdminActor } from './admin-auth.guard';

/** Which admin token authenticated the request (set by AdminAuthGuard), for audit events. */
export const Actor = createParamDecorator((_: unknown, context: ExecutionContext): AdminActor => {
  return context.switchToHttp().getRequest<{ adminActor?: AdminActor }>().adminActor ?? 'admin';
});
