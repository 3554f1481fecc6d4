import { Controller, Get, HttpCode, ServiceUnavailableException } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { ActiveStorage } from '../storage/active-storage';

@ApiExcludeController()
@Controller()
export class HealthController {
  constructor(private readonly storage: ActiveStorage) {}

  /** Liveness: the process answers. No I/O. */
  @Get('health')
  health(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Readiness: the store answers within a short timeout. */
  @Get('ready')
  @HttpCode(200)
  async ready(): Promise<{ status: 'ready'; storage: string }> {
    if (!(await this.storage.isHealthy(1000))) {
      throw new ServiceUnavailableException(`storage (${this.storage.info.backend}) is not reachable`);
    }
    return { status: 'ready', storage: this.storage.info.backend };
  }
}
