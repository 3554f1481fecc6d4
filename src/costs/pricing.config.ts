import { z } from 'zod';
import { defineConfig } from '../config/config-slice';
import { optional } from '../config/env-schema';
import { loadPricing } from './pricing';

/** Model prices: LiteLLM's file (PRICING_FILE), overridden by `pricing` in gateway.json. */
export const pricingConfig = defineConfig('pricing', { PRICING_FILE: optional(z.string().min(1)) }, (env, { gateway }) =>
  loadPricing(gateway.pricing, env.PRICING_FILE),
);
