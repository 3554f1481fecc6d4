import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { JobLock } from '../storage/ports/job-lock';
import { ReservationsService } from './reservations.service';

export const RESERVATION_REAPER_JOB = 'reservation-reaper';

/**
 * Every min(60 s, RESERVATION_TTL_SECS / 4), releases the reservations older than
 * RESERVATION_TTL_SECS (a replica that stopped mid-request), under the `reservation-reaper` JobLock so
 * that one replica reaps at a time. The interval is registered at bootstrap because its period comes
 * from the configuration.
 */
@Injectable()
export class ReservationReaperJob implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(ReservationReaperJob.name);
  private running: Promise<void> | null = null;

  constructor(
    private readonly reservations: ReservationsService,
    private readonly lock: JobLock,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  private get everyMs(): number {
    return Math.min(60_000, Math.max(1000, Math.floor(this.reservations.ttlMs / 4)));
  }

  onApplicationBootstrap(): void {
    this.scheduler.addInterval(RESERVATION_REAPER_JOB, setInterval(() => void this.tick(), this.everyMs));
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.scheduler.doesExist('interval', RESERVATION_REAPER_JOB)) this.scheduler.deleteInterval(RESERVATION_REAPER_JOB);
    await this.running;
  }

  /** One run; a run still in progress is not overlapped. Never rejects. */
  tick(): Promise<void> {
    this.running ??= this.run().finally(() => (this.running = null));
    return this.running;
  }

  private async run(): Promise<void> {
    try {
      // Held for at most one period: a replica that dies while reaping does not stop the others for long.
      const result = await this.lock.runExclusive(RESERVATION_REAPER_JOB, this.everyMs, () => this.reservations.release(Date.now() - this.reservations.ttlMs));
      if (result.ran && result.value.tokens + result.value.usdMicros > 0) {
        const { tokens, usdMicros } = result.value;
        this.logger.warn(`released ${tokens} token and ${usdMicros} cost reservation(s) older than ${this.reservations.ttlMs / 1000} s (a replica stopped mid-request?)`);
      }
    } catch (error) {
      this.logger.error(`reservation reaper failed, will retry: ${(error as Error).message}`);
    }
  }
}
