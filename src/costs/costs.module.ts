import { Module } from '@nestjs/common';
import { CostsService } from './costs.service';

/** Model prices (PRICING_FILE, `pricing` in gateway.json). Cost limits are the ledger's (src/ledger). */
@Module({ providers: [CostsService], exports: [CostsService] })
export class CostsModule {}
