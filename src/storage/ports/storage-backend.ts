import { AuditLogRepository } from './audit-log.repository';
import { AccountingLedger } from './accounting-ledger';
import { BudgetLedger } from './budget-ledger';
import { CostLedger } from './cost-ledger';
import { ScopeRateLimitRepository } from './scope-rate-limit.repository';
import { VirtualKeyRepository } from './virtual-key.repository';
import { ChangeFeed } from './change-feed';
import { JobLock } from './job-lock';

export const BACKEND_NAMES = ['memory', 'state', 'sqlite', 'postgres', 'mongodb', 'redis'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Connection settings for every backend; only the chosen backend's part is used. */
export interface StorageOptions {
  sqlite: { path: string };
  state: { file: string };
  postgres: { dsn: string; poolMin: number; poolMax: number; schema?: string };
  mongodb: { uri: string; database: string };
  redis: { url: string; prefix: string; timeoutMs: number };
  /** Poll interval of the version-counter change feed (sqlite, mongodb). */
  changePollMs: number;
}

/**
 * One opened backend: the ports bound to it plus its lifecycle. `open*Backend` functions connect,
 * ping and migrate before resolving, so a returned backend is ready; any failure rejects (and the
 * selection falls back to the next candidate).
 */
export interface StorageBackend {
  readonly name: BackendName;
  readonly keys: VirtualKeyRepository;
  readonly budgets: BudgetLedger;
  readonly costs: CostLedger;
  /** Both ledgers in one operation, when the store has one (SQLite); otherwise they are called in parallel. */
  readonly accounting?: AccountingLedger;
  readonly audit: AuditLogRepository;
  readonly rateLimits: ScopeRateLimitRepository;
  readonly changes: ChangeFeed;
  readonly locks: JobLock;
  /** Rejects when the store cannot be reached. */
  ping(): Promise<void>;
  /**
   * Rejects when the store cannot take a write (`/ready`). Where absent, a job-lock lease is the probe;
   * SQLite writes through its writer thread, so a lock held past busy_timeout never stalls the event loop.
   */
  probeWrite?(): Promise<void>;
  /** Facts for `GET /admin/storage` (file path, host, database, prefix, pool), never a secret. */
  details(): Record<string, unknown>;
  /** Stops pollers/subscribers and closes connections. Idempotent. */
  close(): Promise<void>;
}
