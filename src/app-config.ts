import { adminConfig } from './admin/admin.config';
import { auditConfig } from './audit/audit.config';
import { budgetsConfig } from './budgets/budgets.config';
import { settleJournalConfig } from './budgets/settle-journal.config';
import { cacheConfig } from './cache/cache.config';
import { LoadedConfig, loadConfig } from './config/load-config';
import { serverConfig } from './config/server.config';
import { pricingConfig } from './costs/pricing.config';
import { proxyConfig } from './proxy/proxy.config';
import { storageConfig } from './storage/storage.config';

/** Every configuration namespace of the application; each feature owns its slice. */
export const CONFIG_SLICES = [serverConfig, storageConfig, adminConfig, proxyConfig, auditConfig, budgetsConfig, settleJournalConfig, pricingConfig, cacheConfig] as const;

/** The validated configuration, by namespace (`server`, `storage`, `gateway`, …). */
export type AppConfig = LoadedConfig<typeof CONFIG_SLICES>;

/**
 * Validates an environment map (process.env plus `.env` in main.ts; an explicit map in tests, so two
 * applications in one process can differ) and builds every namespace. Throws ConfigError listing
 * every problem at once.
 */
export function loadAppConfig(raw: Readonly<Record<string, string | undefined>>): AppConfig {
  return loadConfig(raw, CONFIG_SLICES);
}
