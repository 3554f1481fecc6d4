import { z } from 'zod';
import { defineConfig } from '../config/config-slice';
import { integer } from '../config/env-schema';

/** How budgets are reserved and enforced (docs/budgets.md). */
export const budgetsConfig = defineConfig(
  'budgets',
  {
    BUDGET_MODE: z.enum(['estimate', 'strict']).default('strict'),
    BUDGET_DEFAULT_OUTPUT_TOKENS: integer(1, 1024, 10_000_000),
    RESERVATION_TTL_SECS: integer(10, 900, 7 * 86_400),
    COST_UNKNOWN_MODEL: z.enum(['refuse', 'allow']).default('refuse'),
  },
  (env) => ({
    /** `strict` (default) also caps each request's output tokens to what its scopes have left; `estimate` reserves the worst case and leaves the request as sent. */
    mode: env.BUDGET_MODE,
    /** Output tokens reserved per choice for a request that sets no max_tokens (or its API's equivalent) for a model whose maximum output the pricing table does not give. */
    defaultOutputTokens: env.BUDGET_DEFAULT_OUTPUT_TOKENS,
    /** Reservations older than this are released by the reaper (a crashed replica's, or a lost settle). */
    reservationTtlMs: env.RESERVATION_TTL_SECS * 1000,
    /** What to do with an unpriced model when a cost limit applies: refuse (cost_unknown_model) or charge 0. */
    unknownModelCost: env.COST_UNKNOWN_MODEL,
  }),
);
