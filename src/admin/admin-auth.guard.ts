import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { adminConfig } from './admin.config';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { constantTimeEquals } from './constant-time';
import { PUBLIC_ROUTE } from './public.decorator';
const READ_METHODS = new Set(['GET', 'HEAD']);

/** Which admin token a request presented. */
export type AdminActor = 'admin' | 'admin-read';

/**
 * Global guard of every route the Nest router serves (`/admin/*`, `/api/auth/*`, …), fail-closed: a
 * route is an admin route unless its controller or handler is marked @Public(). It decides by the
 * route that matched, never by the URL's spelling, so no encoding of a path reaches an admin handler
 * without this check. With no token configured the admin API does not exist (404 admin_disabled);
 * otherwise a valid token is required, and the read token only reads. (The `/v1` proxy does not pass
 * through Nest: it checks virtual keys itself.)
 */
@Injectable()
export class AdminAuthGuard implements CanActivate {
  constructor(
    @Inject(adminConfig.KEY) private readonly config: ConfigType<typeof adminConfig>,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()])) return true;
    const request = context.switchToHttp().getRequest<FastifyRequest & { adminActor?: AdminActor }>();
    const { token, readToken } = this.config;
    if (token === null && readToken === null) {
      throw new GatewayError(ErrorCode.AdminDisabled, 'the admin API is disabled: set ADMIN_TOKEN to enable it');
    }
    const presented = presentedToken(request);
    if (presented === null) throw new GatewayError(ErrorCode.AdminUnauthorized, 'missing admin token (Authorization: Bearer … or x-admin-token)');
    // Compare against both configured tokens every time so timing does not reveal which one matched.
    const isWrite = token !== null && constantTimeEquals(presented, token);
    const isRead = readToken !== null && constantTimeEquals(presented, readToken);
    if (!isWrite && !isRead) throw new GatewayError(ErrorCode.AdminUnauthorized, 'invalid admin token');
    if (!isWrite && !READ_METHODS.has(request.method)) {
      throw new GatewayError(ErrorCode.AdminForbidden, 'the read-only admin token cannot change anything');
    }
    request.adminActor = isWrite ? 'admin' : 'admin-read';
    return true;
  }
}

function presentedToken(request: FastifyRequest): string | null {
  const header = request.headers['x-admin-token'];
  if (typeof header === 'string' && header.length > 0) return header;
  const authorization = request.headers.authorization;
  const match = typeof authorization === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
  return match ? match[1] : null;
}
