import { Global, Module } from '@nestjs/common';
import { ConnectionDrain } from './connection-drain';
import { DrainState } from './drain-state';
import { BudgetsModule } from '../budgets/budgets.module';
import { HealthController } from './health.controller';
import { WriteProbe } from './write-probe';

@Global()
@Module({ imports: [BudgetsModule], controllers: [HealthController], providers: [DrainState, ConnectionDrain, WriteProbe], exports: [DrainState, ConnectionDrain] })
export class HealthModule {}
