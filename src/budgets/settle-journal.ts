import { constants as fsConstants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { LedgerAmounts } from '../storage/ports/accounting-ledger';

/** One settle the store did not take: what `AccountingLedger.settle(id, actual)` must still do. */
export interface SettleEntry {
  /** The reservation id (settling it is idempotent on every backend: a second settle changes nothing). */
  id: string;
  /** Amounts to commit, or null to release. */
  actual: LedgerAmounts | null;
  /** When the request ended (epoch ms). */
  at: number;
}

export interface SettleJournalBounds {
  maxEntries: number;
  maxBytes: number;
}

/** The journal cannot take an entry: full, or its file cannot be written. */
export class SettleJournalRefused extends Error {}

const FILE_PREFIX = 'settle-journal.';
const FILE_SUFFIX = '.jsonl';
/** Journals open in this process (tests run several gateways in one): never adopted, never reused. */
const OPEN = new Set<string>();

/**
 * The settles this replica owes the store, kept on disk while the store is down (docs/budgets.md,
 * "Store faults"): an append-only JSON-lines file in DATA_DIR, `settle-journal.<pid>.jsonl`, fsynced
 * once per batch of appends, bounded in entries and bytes. Entries leave it once replayed; the file is
 * rewritten (temp file, fsync, rename) without them. Opening it adopts the journals of this host's
 * processes that are gone (a replica restarted while the store was down) and of its own pid (a
 * container's pid is always the same), so their settles are replayed too.
 *
 * One writer per file: every file operation runs in order on one promise chain.
 */
export class SettleJournal {
  private entries: SettleEntry[] = [];
  private bytes = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private waiting: Array<{ entry: SettleEntry; line: string; resolve: () => void; reject: (error: Error) => void }> = [];

  private constructor(
    readonly file: string,
    private readonly bounds: SettleJournalBounds,
  ) {}

  /**
   * Opens (creating DATA_DIR) this process's journal and adopts the entries of the journals left by
   * processes that are gone; returns it with every entry still owed, oldest first.
   */
  static async open(dir: string, bounds: SettleJournalBounds, pid = process.pid): Promise<{ journal: SettleJournal; adopted: string[]; skipped: number }> {
    try {
      await fs.mkdir(dir, { recursive: true });
      await fs.access(dir, fsConstants.W_OK);
    } catch (error) {
      throw new Error(`DATA_DIR "${dir}": the settle journal cannot be kept there (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    let file = path.resolve(dir, `${FILE_PREFIX}${pid}${FILE_SUFFIX}`);
    for (let n = 2; OPEN.has(file); n++) file = path.resolve(dir, `${FILE_PREFIX}${pid}.${n}${FILE_SUFFIX}`);
    OPEN.add(file);
    const journal = new SettleJournal(file, bounds);
    const adopted: string[] = [];
    let skipped = 0;
    for (const name of (await fs.readdir(dir)).sort()) {
      const owner = ownerPid(name);
      const file = path.resolve(dir, name);
      if (owner === null || (owner !== pid && alive(owner)) || (OPEN.has(file) && file !== journal.file)) continue;
      const read = parseLines(await fs.readFile(file, 'utf8'));
      skipped += read.skipped;
      journal.entries.push(...read.entries);
      adopted.push(file);
    }
    // Own file first, written whole, before the adopted files go: a crash in between replays twice, which settles once.
    await journal.rewrite();
    for (const file of adopted) if (file !== journal.file) await fs.rm(file, { force: true });
    return { journal, adopted: adopted.filter((f) => f !== journal.file), skipped };
  }

  /** Entries still owed, oldest first. */
  get pending(): readonly SettleEntry[] {
    return this.entries;
  }

  get size(): number {
    return this.entries.length;
  }

  /**
   * Appends an entry; resolves once it is on disk (fsync). The appends of one event-loop turn share one
   * write and one fsync. Rejects with SettleJournalRefused when the journal is full or cannot be written.
   */
  append(entry: SettleEntry): Promise<void> {
    const line = `${JSON.stringify(entry)}\n`;
    const queuedBytes = this.waiting.reduce((sum, w) => sum + Buffer.byteLength(w.line), 0);
    if (this.entries.length + this.waiting.length >= this.bounds.maxEntries || this.bytes + queuedBytes + Buffer.byteLength(line) > this.bounds.maxBytes) {
      return Promise.reject(new SettleJournalRefused(`the settle journal is full (${this.entries.length} entries, ${this.bytes} bytes; SETTLE_JOURNAL_MAX_ENTRIES=${this.bounds.maxEntries}, SETTLE_JOURNAL_MAX_BYTES=${this.bounds.maxBytes})`));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ entry, line, resolve, reject });
      if (this.waiting.length === 1) setImmediate(() => void this.flush());
    });
  }

  /** Removes replayed entries (by reservation id) and rewrites the file without them. */
  async remove(ids: ReadonlySet<string>): Promise<void> {
    if (ids.size === 0) return;
    // The entries leave memory once they have left the file: the depth never shows less than the disk holds.
    await this.serial(async () => {
      const remaining = this.entries.filter((e) => !ids.has(e.id));
      await this.rewrite(remaining);
      this.entries = remaining;
    });
  }

  /** Waits for the writes under way; the file stays (with what is still owed) for the next start. */
  async close(): Promise<void> {
    await this.chain.catch(() => undefined);
    OPEN.delete(this.file);
  }

  private flush(): Promise<void> {
    const batch = this.waiting;
    this.waiting = [];
    return this.serial(async () => {
      const text = batch.map((b) => b.line).join('');
      let handle: fs.FileHandle | undefined;
      try {
        handle = await fs.open(this.file, 'a');
        await handle.appendFile(text);
        await handle.sync();
      } catch (error) {
        const refused = new SettleJournalRefused(`the settle journal ${this.file} could not be written: ${(error as Error).message}`);
        batch.forEach((b) => b.reject(refused));
        return;
      } finally {
        await handle?.close();
      }
      this.bytes += Buffer.byteLength(text);
      this.entries.push(...batch.map((b) => b.entry));
      batch.forEach((b) => b.resolve());
    });
  }

  /** The file holds exactly `entries` (default: all held; written beside it, fsynced, renamed over it; removed when empty). */
  private async rewrite(entries = this.entries): Promise<void> {
    if (entries.length === 0) {
      await fs.rm(this.file, { force: true });
      this.bytes = 0;
      return;
    }
    const text = entries.map((e) => `${JSON.stringify(e)}\n`).join('');
    const temp = `${this.file}.tmp`;
    const handle = await fs.open(temp, 'w');
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, this.file);
    this.bytes = Buffer.byteLength(text);
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }
}

function ownerPid(name: string): number | null {
  if (!name.startsWith(FILE_PREFIX) || !name.endsWith(FILE_SUFFIX)) return null;
  const match = /^([1-9]\d{0,9})(\.\d{1,9})?$/.exec(name.slice(FILE_PREFIX.length, -FILE_SUFFIX.length));
  return match ? Number(match[1]) : null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Entries of a journal file; a line that does not parse (a write cut short by a crash) is skipped and counted. */
function parseLines(text: string): { entries: SettleEntry[]; skipped: number } {
  const entries: SettleEntry[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as SettleEntry;
      if (typeof entry.id !== 'string' || typeof entry.at !== 'number' || !validActual(entry.actual)) throw new Error('not an entry');
      entries.push({ id: entry.id, actual: entry.actual, at: entry.at });
    } catch {
      skipped++;
    }
  }
  return { entries, skipped };
}

function validActual(actual: unknown): actual is LedgerAmounts | null {
  if (actual === null) return true;
  const a = actual as LedgerAmounts;
  return typeof a === 'object' && Number.isSafeInteger(a.tokens) && a.tokens >= 0 && Number.isSafeInteger(a.usdMicros) && a.usdMicros >= 0;
}
