import { StorageBackend } from '../../storage-backend';
import { MemoryAuditLogRepository } from './memory-audit-log.repository';
import { MemoryChangeFeed } from './memory-change-feed';
import { MemoryLedger } from './memory-ledger';
import { MemoryVirtualKeyRepository } from './memory-virtual-key.repository';

/** Everything in process: no persistence, nothing shared between replicas. */
export async function openMemoryBackend(): Promise<StorageBackend> {
  return {
    name: 'memory',
    keys: new MemoryVirtualKeyRepository(),
    budgets: new MemoryLedger(),
    costs: new MemoryLedger(),
    audit: new MemoryAuditLogRepository(),
    changes: new MemoryChangeFeed(),
    ping: async () => undefined,
    details: () => ({ persistent: false }),
    close: async () => undefined,
  };
}
