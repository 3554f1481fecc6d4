import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { ModelPrice } from './pricing';
import { pricingConfig } from './pricing.config';

/** The pricing table: what a model costs, in USD per token (as integer pico-USD). */
@Injectable()
export class CostsService {
  constructor(@Inject(pricingConfig.KEY) private readonly pricing: ConfigType<typeof pricingConfig>) {}

  price(model: string | null): ModelPrice | null {
    return this.pricing.lookup(model);
  }
}
