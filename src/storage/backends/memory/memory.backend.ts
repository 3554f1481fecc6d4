import { StorageBackend } from '../../ports/storage-backend';
import { MemoryAuditLogRepository } from './memory-audit-log.repository';
import { MemoryChangeFeed } from './memory-change-feed';
import { MemoryJobLock } from './memory-job-lock';
import { MemoryAccountingLedger, MemoryLedger } from './memory-ledger';
import { MemoryRateLimitRepository } from './memory-rate-limit.repository';
import { MemoryVirtualKeyRepository } from './memory-virtual-key.repository';

/** Everything in process: no persistence, nothing shared between replicas. */
export async function openMemoryBackend(): Promise<StorageBackend> {
  const budgets = new MemoryLedger();
  const costs = new MemoryLedger();
  return {
    name: 'memory',
    keys: new MemoryVirtualKeyRepository(),
    budgets,
    costs,
    accounting: new MemoryAccountingLedger(budgets, costs),
    audit: new MemoryAuditLogRepository(),
    rateLimits: new MemoryRateLimitRepository(),
    changes: new MemoryChangeFeed(),
    locks: new MemoryJobLock(),
    ping: async () => undefined,
    details: () => ({ persistent: false }),
    close: async () => undefined,
  };
}
