import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { VirtualKey } from '../../../virtual-keys/domain/virtual-key';
import { StorageBackend, StorageOptions } from '../../ports/storage-backend';
import { MemoryAuditLogRepository } from '../memory/memory-audit-log.repository';
import { MemoryChangeFeed } from '../memory/memory-change-feed';
import { MemoryJobLock } from '../memory/memory-job-lock';
import { MemoryAccountingLedger, MemoryLedger } from '../memory/memory-ledger';
import { MemoryRateLimitRepository } from '../memory/memory-rate-limit.repository';
import { MemoryVirtualKeyRepository } from '../memory/memory-virtual-key.repository';

/** A key as the file holds it; a file written before `cache` existed has keys without it. */
type StoredKey = Omit<VirtualKey, 'cache' | 'allowedRoutes'> & { cache?: Partial<VirtualKey['cache']>; allowedRoutes?: string[] };

interface StateFileContent {
  version: 1;
  virtual_keys: StoredKey[];
}

/**
 * Virtual keys in a JSON file (`STATE_FILE`); ledgers, scope rate limits, audit and the change feed
 * stay in memory (the original gateway's `--state` mode). Every key change rewrites the file atomically:
 * write a temporary file beside it, fsync, rename over the old one, so a crash leaves the old or the new
 * file, never half of one. A file that cannot be parsed is never overwritten: opening fails instead.
 */
export async function openStateBackend(options: StorageOptions): Promise<StorageBackend> {
  const file = path.resolve(options.state.file);
  const keys = await readStateFile(file);
  let writes: Promise<void> = Promise.resolve();
  const save = (all: VirtualKey[]): Promise<void> => {
    const content: StateFileContent = { version: 1, virtual_keys: all };
    writes = writes.catch(() => undefined).then(() => writeAtomically(file, JSON.stringify(content, null, 2)));
    return writes;
  };
  if (keys === null) await save([]);
  const budgets = new MemoryLedger();
  const costs = new MemoryLedger();

  return {
    name: 'state',
    keys: new MemoryVirtualKeyRepository(keys ?? [], save),
    budgets,
    costs,
    accounting: new MemoryAccountingLedger(budgets, costs),
    audit: new MemoryAuditLogRepository(),
    rateLimits: new MemoryRateLimitRepository(),
    changes: new MemoryChangeFeed(),
    locks: new MemoryJobLock(),
    ping: () => fs.access(path.dirname(file)),
    details: () => ({ file, persists: ['virtual_keys'] }),
    close: () => writes.catch(() => undefined),
  };
}

/** The stored keys, or null when the file does not exist yet. */
async function readStateFile(file: string): Promise<VirtualKey[] | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      await fs.mkdir(path.dirname(file), { recursive: true }).catch((e: Error) => {
        throw new Error(`STATE_FILE "${file}": cannot create its directory (${e.message})`);
      });
      return null;
    }
    throw new Error(`STATE_FILE "${file}": cannot be read (${(error as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`STATE_FILE "${file}": not valid JSON (${(error as Error).message}); the file was left untouched`);
  }
  const content = parsed as Partial<StateFileContent>;
  if (typeof content !== 'object' || content === null || !Array.isArray(content.virtual_keys)) {
    throw new Error(`STATE_FILE "${file}": expected {"version":1,"virtual_keys":[…]}; the file was left untouched`);
  }
  content.virtual_keys.forEach((key, i) => {
    if (typeof key?.id !== 'string' || typeof key?.tokenHash !== 'string') {
      throw new Error(`STATE_FILE "${file}": virtual_keys[${i}] has no id/tokenHash; the file was left untouched`);
    }
  });
  return content.virtual_keys.map(withDefaults);
}

/** Fields added since a file was written read as their defaults (`cache`: the global TTL; `allowedRoutes`: every route). */
function withDefaults(key: StoredKey): VirtualKey {
  return { ...key, cache: { ttlSecs: key.cache?.ttlSecs ?? null }, allowedRoutes: key.allowedRoutes ?? [] };
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await fs.open(temp, 'w', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, file);
}
