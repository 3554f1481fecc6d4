import { Controller, Get, HttpCode } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Public } from '../admin/public.decorator';
import { SettleRecovery } from '../budgets/settle-recovery.service';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { MetricsService } from '../metrics/metrics.service';
import { ActiveStorage } from '../storage/active-storage';
import { DrainState } from './drain-state';
import { WriteProbe } from './write-probe';

@ApiExcludeController()
@Public()
@Controller()
export class HealthController {
  constructor(
    private readonly storage: ActiveStorage,
    private readonly drain: DrainState,
    private readonly probe: WriteProbe,
    private readonly recovery: SettleRecovery,
    private readonly metrics: MetricsService,
  ) {}

  /** Liveness: the process answers. No I/O. */
  @Get('health')
  health(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /**
   * Readiness: not shutting down, the store takes a write within a short timeout (a store that answers
   * reads but cannot write — SQLite on a full disk or locked past busy_timeout — is not ready), and no
   * settle of a request already served waits in the journal for it.
   */
  @Get('ready')
  @HttpCode(200)
  async ready(): Promise<{ status: 'ready'; storage: string }> {
    const backend = this.storage.info.backend;
    if (this.drain.draining) throw new GatewayError(ErrorCode.ShuttingDown, 'draining: this instance is shutting down');
    if (!(await this.probe.writable(1000))) {
      this.metrics.storageErrors.inc({ operation: 'ready.write_probe' });
      throw new GatewayError(ErrorCode.StorageUnavailable, `storage (${backend}) is not reachable or does not take writes`);
    }
    if (this.recovery.depth > 0) {
      throw new GatewayError(ErrorCode.StorageUnavailable, `storage (${backend}) is back, ${this.recovery.depth} journaled settle(s) are still being replayed`);
    }
    return { status: 'ready', storage: backend };
  }
}
