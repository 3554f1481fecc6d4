import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DataSource } from 'typeorm';
import { SqliteInitialSchema1767225600000 } from '../../src/storage/backends/typeorm/migrations/sqlite/1767225600000-initial-schema';
import { SqliteJobLeases1767312000000 } from '../../src/storage/backends/typeorm/migrations/sqlite/1767312000000-job-leases';
import type { Worker } from 'node:worker_threads';
import { AUDIT_COLUMNS } from '../../src/storage/backends/typeorm/mappers/audit-record.mapper';
import { WorkerSqliteWriter } from '../../src/storage/backends/typeorm/sqlite-writer';
import { quoteIdentifier } from '../../src/storage/backends/typeorm/typeorm-store';
import { openTypeormBackend } from '../../src/storage/backends/typeorm/typeorm.backend';
import { describeStorageContract } from './contract';
import { ContractTarget } from './contract-target';
import { describeJobLockContract } from './job-lock.contract';
import { testStorageOptions } from './options';

function sqliteOptions(file: string) {
  return testStorageOptions({ sqlite: { path: file } });
}

const target: ContractTarget = {
  name: 'sqlite',
  shared: true,
  persistent: true,
  prepare: async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ditto-sqlite-'));
    // A directory that does not exist yet: opening must create it.
    const options = sqliteOptions(path.join(dir, 'nested', 'ditto.sqlite'));
    return {
      open: () => openTypeormBackend('sqlite', options),
      teardown: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

describeStorageContract(target);
describeJobLockContract(target, { freedBy: 'ttl' });

// SQLITE_PATH=:memory: exists on the main connection only, so its ledger and audit writes run there
// (InThreadSqliteWriter) instead of in the writer thread: the same contract, single-instance.
describeStorageContract({
  name: 'sqlite',
  variant: ':memory:',
  shared: false,
  persistent: false,
  prepare: async () => ({ open: () => openTypeormBackend('sqlite', sqliteOptions(':memory:')), teardown: async () => undefined }),
});

describe('sqlite backend', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-sqlite-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  // The migration's CREATE TABLEs have no IF NOT EXISTS: reopening only succeeds if nothing re-runs.
  it('migrates a new file once and runs nothing when reopened', async () => {
    const file = path.join(dir, 'ditto.sqlite');
    const first = await openTypeormBackend('sqlite', sqliteOptions(file));
    expect(first.details()).toEqual({ path: file });
    await first.close();
    await first.close();
    const second = await openTypeormBackend('sqlite', sqliteOptions(file));
    try {
      expect(await second.keys.count()).toBe(0);
    } finally {
      await second.close();
    }
  });

  // Ledger calls wait for the end of the event-loop turn to be committed together: closing the store
  // in the same turn must still commit them, not fail them on a closed connection.
  it('commits ledger calls submitted just before close', async () => {
    const file = path.join(dir, 'ditto.sqlite');
    const backend = await openTypeormBackend('sqlite', sqliteOptions(file));
    const reserved = backend.accounting!.reserve('last', ['key:last'], { tokens: 5, usdMicros: 7 });
    await backend.close();
    await expect(reserved).resolves.toEqual({ ok: true });
    const reopened = await openTypeormBackend('sqlite', sqliteOptions(file));
    try {
      expect(await reopened.budgets.get('key:last')).toMatchObject({ reserved: 5 });
    } finally {
      await reopened.close();
    }
  });

  // better-sqlite3 waits for a busy database synchronously: on the event loop that would stall every
  // request of the process. Ledger and audit writes run in the writer thread, so it keeps running.
  it('keeps the event loop running while a ledger write waits for another connection to let go of the file', async () => {
    const file = path.join(dir, 'ditto.sqlite');
    const backend = await openTypeormBackend('sqlite', sqliteOptions(file));
    const Database = require('better-sqlite3') as new (file: string) => { exec(sql: string): void; close(): void };
    const other = new Database(file);
    try {
      other.exec('BEGIN IMMEDIATE');
      const reserved = backend.accounting!.reserve('waits', ['key:w'], { tokens: 5, usdMicros: 0 });
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      await new Promise((resolve) => setTimeout(resolve, 400));
      clearInterval(ticker);
      other.exec('COMMIT');
      await expect(reserved).resolves.toEqual({ ok: true });
      // Blocked, the loop would not have ticked at all until the COMMIT above.
      expect(ticks).toBeGreaterThan(20);
      expect(await backend.budgets.get('key:w')).toMatchObject({ reserved: 5 });
    } finally {
      other.close();
      await backend.close();
    }
  });

  it('starts a new writer thread when the last one has ended, instead of sending batches into the void', async () => {
    const file = path.join(dir, 'ditto.sqlite');
    await (await openTypeormBackend('sqlite', sqliteOptions(file))).close();
    const tables = { scopes: quoteIdentifier('ledger_scopes'), reservations: quoteIdentifier('ledger_reservations'), audit: quoteIdentifier('audit_log'), auditColumns: AUDIT_COLUMNS };
    const writer = await WorkerSqliteWriter.open({ file, busyTimeoutMs: 1000, tables });
    const row = (id: string) => [id, 1, 'proxy', null, null, null, '{}'];
    try {
      await expect(writer.submit({ type: 'audit', rows: [row('first')] })).resolves.toBe(1);
      // The thread ends while idle (crash, OOM): the next batch must still be answered.
      await (await (writer as unknown as { worker: Promise<Worker> }).worker).terminate();
      await expect(writer.submit({ type: 'audit', rows: [row('second')] })).resolves.toBe(1);
    } finally {
      await writer.close();
    }
    const reopened = await openTypeormBackend('sqlite', sqliteOptions(file));
    try {
      expect(await reopened.audit.count()).toBe(2);
    } finally {
      await reopened.close();
    }
  });

  // Incremental auto-vacuum (docs/audit.md, "Each store expires the way it is best at"): deleting rows
  // only puts their pages on the file's free list; the retention's vacuum steps give them back.
  it('gives the space of pruned audit rows back to the file system: the file shrinks after the vacuum steps', async () => {
    const file = path.join(dir, 'ditto.sqlite');
    // Bytes on disk once every connection has closed (the WAL is checkpointed into the file and removed).
    const closedSize = () => {
      expect(existsSync(`${file}-wal`)).toBe(false);
      return statSync(file).size;
    };
    const rows = 100_000;
    const payload = { method: 'POST', path: '/v1/chat/completions', model: 'gpt-4o-mini', backend: 'openai', status: 200, usage: { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 }, latency_ms: 180, stream: false };
    let backend = await openTypeormBackend('sqlite', sqliteOptions(file));
    const empty = (await backend.close(), closedSize());

    backend = await openTypeormBackend('sqlite', sqliteOptions(file));
    for (let n = 0; n < rows; n += 500) {
      await backend.audit.append(
        Array.from({ length: 500 }, (_, i) => ({ id: `row-${n + i}`, ts: 1_000_000 + n + i, kind: 'proxy', requestId: `req-${n + i}`, keyId: `key-${i % 7}`, tenantId: i % 3 ? null : 'acme', payload })),
      );
    }
    await backend.close();
    const filled = closedSize();

    backend = await openTypeormBackend('sqlite', sqliteOptions(file));
    let deleted = 0;
    for (let n = -1; n !== 0; deleted += n) n = await backend.audit.deleteOlderThan(2_000_000, 5000);
    expect(deleted).toBe(rows);
    await backend.close();
    const pruned = closedSize();

    backend = await openTypeormBackend('sqlite', sqliteOptions(file));
    let steps = 0;
    while (await backend.audit.reclaimStep()) steps++;
    await backend.close();
    const vacuumed = closedSize();

    console.log(`sqlite file: ${empty} bytes new, ${filled} with ${rows} audit rows, ${pruned} after deleting them, ${vacuumed} after ${steps + 1} vacuum steps`);
    expect(filled).toBeGreaterThan(empty + rows * 300);
    // Deleting alone keeps the file as large as it was: the pages are free, but still the file's.
    expect(pruned).toBeGreaterThanOrEqual(filled * 0.95);
    expect(vacuumed).toBeLessThan(empty + (filled - empty) * 0.05);
  }, 60_000);

  it('upgrades a file written before the response cache: its keys follow the global TTL', async () => {
    const file = path.join(dir, 'old.sqlite');
    const old = new DataSource({
      type: 'better-sqlite3',
      database: file,
      migrations: [SqliteInitialSchema1767225600000, SqliteJobLeases1767312000000],
      migrationsRun: true,
    });
    await old.initialize();
    await old.query(
      `INSERT INTO virtual_keys (id, name, token_hash, token_prefix, enabled, expires_at, tenant_id, project_id, user_id,
         models, limit_rpm, limit_tpm, budget_total_tokens, budget_total_usd_micros, route, metadata, created_at, updated_at)
       VALUES ('old', NULL, 'old-hash', 'sk-ditto-old', 1, NULL, NULL, NULL, NULL, '[]', 60, NULL, NULL, NULL, NULL, '{}', 1, 1)`,
    );
    await old.destroy();
    const upgraded = await openTypeormBackend('sqlite', sqliteOptions(file));
    try {
      expect(await upgraded.keys.get('old')).toMatchObject({ limits: { rpm: 60, tpm: null }, cache: { ttlSecs: null }, allowedRoutes: [] });
      await upgraded.keys.update({ ...(await upgraded.keys.get('old'))!, allowedRoutes: ['/v1/embeddings'] });
      expect((await upgraded.keys.get('old'))?.allowedRoutes).toEqual(['/v1/embeddings']);
      await upgraded.rateLimits.put({ scope: 'key:old', rpm: 1, tpm: null, updatedAt: 1 });
      expect((await upgraded.rateLimits.list(10, null)).items.map((l) => l.scope)).toEqual(['key:old']);
    } finally {
      await upgraded.close();
    }
  });

  it('names the setting and the cause when the path cannot be used', async () => {
    const blocker = path.join(dir, 'not-a-directory');
    writeFileSync(blocker, 'x');
    const file = path.join(blocker, 'ditto.sqlite');
    await expect(openTypeormBackend('sqlite', sqliteOptions(file))).rejects.toThrow(
      `SQLITE_PATH "${file}": cannot create directory "${blocker}"`,
    );
  });

  it('rejects a file that is not a database, naming the path', async () => {
    const file = path.join(dir, 'garbage.sqlite');
    writeFileSync(file, 'this is not a sqlite database, just text that is long enough to have a header'.repeat(20));
    await expect(openTypeormBackend('sqlite', sqliteOptions(file))).rejects.toThrow(`SQLITE_PATH "${file}": `);
  });

  // root ignores permission bits, so the case can only be shown as another user.
  const asRoot = process.getuid?.() === 0;
  (asRoot ? it.skip : it)('reports a directory it cannot write to', async () => {
    const locked = path.join(dir, 'locked');
    mkdirSync(locked, { mode: 0o500 });
    try {
      await expect(openTypeormBackend('sqlite', sqliteOptions(path.join(locked, 'db.sqlite')))).rejects.toThrow(
        /^SQLITE_PATH ".*": directory not writable \(EACCES\)$/,
      );
    } finally {
      chmodSync(locked, 0o700);
    }
  });
});
