import { Module } from '@nestjs/common';
import { VirtualKeysBootstrap } from './virtual-keys.bootstrap';

@Module({ providers: [VirtualKeysBootstrap] })
export class VirtualKeysModule {}
