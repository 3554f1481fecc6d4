import { Global, Module } from '@nestjs/common';
import { ConnectionDrain } from './connection-drain';
import { DrainState } from './drain-state';
import { HealthController } from './health.controller';

@Global()
@Module({ controllers: [HealthController], providers: [DrainState, ConnectionDrain], exports: [DrainState, ConnectionDrain] })
export class HealthModule {}
