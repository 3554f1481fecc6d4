import { z } from 'zod';
import { defineConfig } from '../config/config-slice';
import { optional } from '../config/env-schema';

/** The admin API's tokens. With neither set, the admin API does not exist (404 admin_disabled). */
export const adminConfig = defineConfig(
  'admin',
  {
    ADMIN_TOKEN: optional(z.string().min(16, 'expected at least 16 characters')),
    ADMIN_READ_TOKEN: optional(z.string().min(16, 'expected at least 16 characters')),
  },
  (env) => ({
    /** Read+write token, or null. */
    token: env.ADMIN_TOKEN ?? null,
    /** GET/HEAD-only token, or null. */
    readToken: env.ADMIN_READ_TOKEN ?? null,
  }),
  (env) => (env.ADMIN_TOKEN && env.ADMIN_READ_TOKEN && env.ADMIN_TOKEN === env.ADMIN_READ_TOKEN ? ['ADMIN_READ_TOKEN: must differ from ADMIN_TOKEN'] : []),
);
