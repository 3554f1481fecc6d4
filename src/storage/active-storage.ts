import { Logger } from '@nestjs/common';
import { BackendConnection, connectBackend } from './connect-backend';
import { BackendName, StorageBackend, StorageOptions } from './ports/storage-backend';
import { StorageSelectionInput, storageCandidates } from './storage-selection';

export interface StorageInfo {
  backend: BackendName;
  selectedBy: string;
  fallbackFrom: Array<{ backend: BackendName; error: string }>;
}

/** The one backend this process uses, and how it was chosen. */
export class ActiveStorage {
  constructor(
    readonly backend: StorageBackend,
    readonly info: StorageInfo,
  ) {}

  /** Whether the store answers a ping within `timeoutMs` (never rejects). */
  async isHealthy(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.backend.ping().then(() => true, () => false), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Tries the candidates in order (docs/storage.md): the first whose probe connects (and
 * migrates) wins; each failure is logged at ERROR with the backend and the cause. When every candidate
 * fails, rejects with all the causes. A pure decision over `storageCandidates`; the probe is the only I/O.
 */
export async function selectStorage(
  selection: StorageSelectionInput,
  options: StorageOptions,
  logger = new Logger('Storage'),
): Promise<{ connection: BackendConnection; info: StorageInfo }> {
  const failures: StorageInfo['fallbackFrom'] = [];
  const candidates = storageCandidates(selection);
  for (const candidate of candidates) {
    try {
      const connection = await connectBackend(candidate.backend, options);
      logger.log(
        `using ${candidate.backend} storage (selected by ${candidate.selectedBy}` +
          (failures.length ? `, after ${failures.map((f) => f.backend).join(', ')} failed)` : ')'),
      );
      return { connection, info: { backend: candidate.backend, selectedBy: candidate.selectedBy, fallbackFrom: failures } };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      failures.push({ backend: candidate.backend, error: message });
      const next = candidates[failures.length];
      logger.error(
        `failed to initialise ${candidate.backend} storage: ${message}` +
          (next ? `; falling back to ${next.backend}` : selection.fallback ? '' : ' (STORAGE_FALLBACK=false: not falling back)'),
      );
    }
  }
  throw new Error(`no storage backend could be initialised: ${failures.map((f) => `${f.backend}: ${f.error}`).join('; ')}`);
}
