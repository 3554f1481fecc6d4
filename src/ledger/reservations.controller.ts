import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Actor } from '../admin/admin-actor.decorator';
import type { AdminActor } from '../admin/admin-auth.guard';
import { AdminApi, AdminErrors } from '../admin/admin-errors.decorator';
import { Reservation } from '../storage/ports/ledger';
import { ReapReservationsDto, ReapResultView, ReservationView } from './dto/scope-limit.dto';
import { ReservationsService } from './reservations.service';

const view = (r: Reservation): ReservationView => ({ id: r.id, scopes: r.scopes, amount: r.amount, created_at: r.createdAt });

@ApiTags('budgets')
@AdminApi()
@Controller('admin/reservations')
export class ReservationsController {
  constructor(private readonly reservations: ReservationsService) {}

  @Post('reap')
  @HttpCode(200)
  @ApiOperation({ summary: 'Release reservations older than older_than_secs (default RESERVATION_TTL_SECS) on both ledgers; dry_run lists them' })
  @ApiOkResponse({ type: ReapResultView })
  @AdminErrors(400, 403)
  async reap(@Body() dto: ReapReservationsDto, @Actor() actor: AdminActor): Promise<ReapResultView> {
    const dryRun = dto.dry_run ?? false;
    const result = await this.reservations.reap(dto.older_than_secs === undefined ? undefined : dto.older_than_secs * 1000, dryRun, actor);
    return {
      older_than_secs: Math.round(result.olderThanMs / 1000),
      dry_run: dryRun,
      tokens: { count: result.tokens.count, items: result.tokens.items.map(view) },
      usd_micros: { count: result.usdMicros.count, items: result.usdMicros.items.map(view) },
    };
  }
}
