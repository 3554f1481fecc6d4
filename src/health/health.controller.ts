import { Controller, Get, HttpCode } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Public } from '../admin/public.decorator';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { ActiveStorage } from '../storage/active-storage';
import { DrainState } from './drain-state';

@ApiExcludeController()
@Public()
@Controller()
export class HealthController {
  constructor(
    private readonly storage: ActiveStorage,
    private readonly drain: DrainState,
  ) {}

  /** Liveness: the process answers. No I/O. */
  @Get('health')
  health(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Readiness: not shutting down, and the store answers within a short timeout. */
  @Get('ready')
  @HttpCode(200)
  async ready(): Promise<{ status: 'ready'; storage: string }> {
    if (this.drain.draining) throw new GatewayError(ErrorCode.ShuttingDown, 'draining: this instance is shutting down');
    if (!(await this.storage.isHealthy(1000))) {
      throw new GatewayError(ErrorCode.StorageUnavailable, `storage (${this.storage.info.backend}) is not reachable`);
    }
    return { status: 'ready', storage: this.storage.info.backend };
  }
}
