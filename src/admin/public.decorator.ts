import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE = 'ditto:public-route';

/**
 * Marks a controller or handler anyone may call without an admin token (health, readiness, metrics).
 * Every other route of the Nest router is an admin route: a new controller is protected by default.
 */
export const Public = (): ClassDecorator & MethodDecorator => SetMetadata(PUBLIC_ROUTE, true);
