import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AuditService } from '../audit/audit.service';
import type { ConfigType } from '@nestjs/config';
import { budgetsConfig } from './budgets.config';
import { CostsService } from '../costs/costs.service';
import { BudgetLedger } from './budget-ledger';
import { Reservation } from './domain/ledger';

const DRY_RUN_ITEMS_MAX = 1000;
const REAPER_INTERVAL = 'reservation-reaper';

export interface LedgerReap {
  count: number;
  items: Reservation[];
}

/**
 * Releases reservations nobody will settle (DESIGN §6 "never leak"): those of a replica that crashed
 * mid-request. A scheduled reaper runs every min(60 s, RESERVATION_TTL_SECS / 4) on every replica
 * (releasing is exactly-once per reservation, so replicas reaping together is harmless), and
 * `POST /admin/reservations/reap` runs it on demand.
 */
@Injectable()
export class ReservationsService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(ReservationsService.name);
  private readonly ttlMs: number;

  constructor(
    private readonly budgets: BudgetLedger,
    private readonly costs: CostsService,
    private readonly audit: AuditService,
    private readonly scheduler: SchedulerRegistry,
    @Inject(budgetsConfig.KEY) settings: ConfigType<typeof budgetsConfig>,
  ) {
    this.ttlMs = settings.reservationTtlMs;
  }

  onApplicationBootstrap(): void {
    const every = Math.min(60_000, Math.max(1000, Math.floor(this.ttlMs / 4)));
    this.scheduler.addInterval(REAPER_INTERVAL, setInterval(() => void this.reapExpired(), every));
  }

  onApplicationShutdown(): void {
    if (this.scheduler.doesExist('interval', REAPER_INTERVAL)) this.scheduler.deleteInterval(REAPER_INTERVAL);
  }

  /** Admin: release (or, dry run, list) reservations older than `olderThanMs` on both ledgers. */
  async reap(olderThanMs: number | undefined, dryRun: boolean, actor: AdminActor): Promise<{ olderThanMs: number; tokens: LedgerReap; usdMicros: LedgerReap }> {
    const age = olderThanMs ?? this.ttlMs;
    const cutoff = Date.now() - age;
    if (dryRun) {
      const [tokens, usdMicros] = await Promise.all([this.budgets.listReservations(cutoff), this.costs.listReservations(cutoff)]);
      const view = (items: Reservation[]) => ({ count: items.length, items: items.slice(0, DRY_RUN_ITEMS_MAX) });
      return { olderThanMs: age, tokens: view(tokens), usdMicros: view(usdMicros) };
    }
    const [tokens, usdMicros] = await Promise.all([this.budgets.reap(cutoff), this.costs.reap(cutoff)]);
    await this.audit.recordNow({
      kind: 'admin.reservations.reap',
      payload: { actor, older_than_secs: Math.round(age / 1000), released: { tokens, usd_micros: usdMicros } },
    });
    return { olderThanMs: age, tokens: { count: tokens, items: [] }, usdMicros: { count: usdMicros, items: [] } };
  }

  private async reapExpired(): Promise<void> {
    try {
      const cutoff = Date.now() - this.ttlMs;
      const [tokens, usdMicros] = await Promise.all([this.budgets.reap(cutoff), this.costs.reap(cutoff)]);
      if (tokens + usdMicros > 0) {
        this.logger.warn(`released ${tokens} token and ${usdMicros} cost reservation(s) older than ${this.ttlMs / 1000} s (a replica stopped mid-request?)`);
      }
    } catch (error) {
      this.logger.error(`reservation reaper failed, will retry: ${(error as Error).message}`);
    }
  }
}
