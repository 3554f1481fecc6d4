import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { SettleJournal, SettleJournalRefused } from './settle-journal';

describe('SettleJournal', () => {
  let dir: string;
  const bounds = { maxEntries: 100, maxBytes: 1 << 20 };
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'ditto-journal-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps appended settles on disk until they are removed, then leaves no file', async () => {
    const { journal } = await SettleJournal.open(dir, bounds);
    await Promise.all([journal.append({ id: 'r1', actual: { tokens: 5, usdMicros: 7 }, at: 1 }), journal.append({ id: 'r2', actual: null, at: 2 })]);
    expect(readFileSync(journal.file, 'utf8').trim().split('\n').map((l) => JSON.parse(l))).toEqual([
      { id: 'r1', actual: { tokens: 5, usdMicros: 7 }, at: 1 },
      { id: 'r2', actual: null, at: 2 },
    ]);
    await journal.remove(new Set(['r1']));
    expect(journal.pending.map((e) => e.id)).toEqual(['r2']);
    expect(readFileSync(journal.file, 'utf8')).toContain('"r2"');
    await journal.remove(new Set(['r2']));
    expect(readdirSync(dir)).toEqual([]);
  });

  it("adopts the journal of a process that is gone (and its own pid's), skipping a line cut short", async () => {
    // pid 2^22+1 is above Linux's pid_max: no such process.
    writeFileSync(path.join(dir, 'settle-journal.4194305.jsonl'), '{"id":"old","actual":{"tokens":3,"usdMicros":0},"at":5}\n{"id":"cut","act');
    writeFileSync(path.join(dir, `settle-journal.${process.pid}.jsonl`), '{"id":"mine","actual":null,"at":6}\n');
    writeFileSync(path.join(dir, 'settle-journal.1.jsonl'), '{"id":"live","actual":null,"at":7}\n');
    const { journal, adopted, skipped } = await SettleJournal.open(dir, bounds);
    expect(journal.pending.map((e) => e.id).sort()).toEqual(['mine', 'old']);
    expect(adopted.map((f) => path.basename(f))).toEqual(['settle-journal.4194305.jsonl']);
    expect(skipped).toBe(1);
    // pid 1 is alive: its journal is its own.
    expect(readdirSync(dir).sort()).toEqual(['settle-journal.1.jsonl', `settle-journal.${process.pid}.jsonl`]);
  });

  it('gives two gateways of one process a journal each, neither adopting the other', async () => {
    const first = await SettleJournal.open(dir, bounds);
    await first.journal.append({ id: 'one', actual: null, at: 1 });
    const second = await SettleJournal.open(dir, bounds);
    expect(second.journal.file).not.toBe(first.journal.file);
    expect(second.journal.size).toBe(0);
    await first.journal.close();
    // Closed (a gateway of this process that stopped): the next one to open replays it.
    const third = await SettleJournal.open(dir, bounds);
    expect(third.journal.pending.map((e) => e.id)).toEqual(['one']);
  });

  it('refuses an entry beyond its bounds', async () => {
    const { journal } = await SettleJournal.open(dir, { maxEntries: 2, maxBytes: 1 << 20 });
    await journal.append({ id: 'a', actual: null, at: 1 });
    await journal.append({ id: 'b', actual: null, at: 1 });
    await expect(journal.append({ id: 'c', actual: null, at: 1 })).rejects.toBeInstanceOf(SettleJournalRefused);
    const small = await SettleJournal.open(path.join(dir, 'small'), { maxEntries: 100, maxBytes: 60 });
    await small.journal.append({ id: 'x', actual: null, at: 1 });
    await expect(small.journal.append({ id: 'y', actual: null, at: 1 })).rejects.toThrow(/SETTLE_JOURNAL_MAX_BYTES=60/);
  });
});
