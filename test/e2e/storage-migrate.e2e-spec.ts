import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import mongoose from 'mongoose';
import { Client } from 'pg';
import { AuditRecord } from '../../src/audit/domain/audit-record';
import { runMigrateCli } from '../../src/storage/migrate/migrate.cli';
import { parseStoreLocation } from '../../src/storage/migrate/store-location';
import { openBackend } from '../../src/storage/open-backend';
import { StorageBackend } from '../../src/storage/ports/storage-backend';
import { sampleKey } from '../storage-contract/contract';
import { PG_DSN, REDIS_URL } from './backends';

async function open(location: string): Promise<StorageBackend> {
  const { backend, options } = parseStoreLocation(location);
  return openBackend(backend, options);
}

async function snapshot(backend: StorageBackend) {
  const audit: AuditRecord[] = [];
  for await (const batch of backend.audit.scan({}, 100)) audit.push(...batch);
  const scopes = async (ledger: StorageBackend['budgets']) => (await ledger.list(null, 1000, null, 0)).items;
  return {
    keys: (await backend.keys.listAll()).sort((a, b) => a.id.localeCompare(b.id)),
    budgets: await scopes(backend.budgets),
    costs: await scopes(backend.costs),
    budgetReservations: await backend.budgets.listReservations(Number.MAX_SAFE_INTEGER),
    costReservations: await backend.costs.listReservations(Number.MAX_SAFE_INTEGER),
    rateLimits: (await backend.rateLimits.list(1000, null)).items,
    audit,
  };
}

describe('storage:migrate (e2e)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ditto-migrate-'));
  const sqlite = path.join(dir, 'source.sqlite');
  const database = `ditto_migrate_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const postgres = PG_DSN.replace(/\/[^/?]*(\?|$)/, `/${database}$1`);
  const prefix = `ditto-migrate-${randomUUID().slice(0, 8)}`;
  const redis = `${REDIS_URL}/0?prefix=${prefix}`;
  // MongoDB when the test setup has one (MONGODB_URI, or FerretDB): sqlite -> mongodb -> redis -> postgres.
  const mongoUri = process.env.MONGODB_URI ?? '';
  const mongodb = mongoUri ? new URL(`/${database}`, mongoUri).toString() : null;
  const chain = [sqlite, ...(mongodb ? [mongodb] : []), redis, postgres];
  const names = ['sqlite', ...(mongodb ? ['mongodb'] : []), 'redis', 'postgres'];
  if (!mongodb) process.stderr.write('\n*** storage:migrate e2e: MongoDB hop SKIPPED (no MONGODB_URI, no FerretDB installed) ***\n\n');
  let out = '';
  let write: jest.SpyInstance;

  beforeAll(async () => {
    const admin = new Client({ connectionString: PG_DSN });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${database}"`);
    await admin.end();
    write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out += String(chunk);
      return true;
    });
  });

  afterAll(async () => {
    write.mockRestore();
    const admin = new Client({ connectionString: PG_DSN });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.end();
    const client = new Redis(REDIS_URL);
    const keys = await client.keys(`${prefix}:*`);
    if (keys.length) await client.del(...keys);
    client.disconnect();
    if (mongodb) {
      const connection = await mongoose.createConnection(mongoUri, { dbName: database }).asPromise();
      await connection.dropDatabase();
      await connection.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it(`copies every row ${names.join(' -> ')}, idempotently, with a count check`, async () => {
    const source = await open(sqlite);
    for (let i = 0; i < 25; i++) {
      const cache = { ttlSecs: [null, 0, 600][i % 3] };
      const allowedRoutes = i % 4 === 0 ? [] : ['/v1/chat/completions', `/v1/batches/**`].slice(0, 1 + (i % 2));
      await source.keys.create(sampleKey(`key-${i}`, { tenantId: i % 2 ? 'acme' : null, metadata: { i }, cache, allowedRoutes }));
    }
    await source.rateLimits.put({ scope: 'tenant:acme', rpm: 600, tpm: null, updatedAt: 1_700_000_000_000 });
    await source.rateLimits.put({ scope: 'key:key-1', rpm: 60, tpm: 100_000, updatedAt: 1_700_000_000_001 });
    await source.budgets.setLimit('key:key-1', 1000, null, 1_700_000_000_000);
    await source.budgets.setLimit('tenant:acme', 50_000, 86_400_000, 1_700_000_000_000);
    await source.budgets.reserve('done', ['key:key-1', 'tenant:acme'], 100, 1_700_000_000_000);
    await source.budgets.commit('done', 80, 1_700_000_000_000);
    await source.budgets.reserve('open', ['key:key-1'], 30, 1_700_000_000_500);
    await source.costs.setLimit('key:key-2', 5_000_000, null, 1_700_000_000_000);
    await source.costs.reserve('c1', ['key:key-2'], 1234, 1_700_000_000_000);
    await source.costs.commit('c1', 1200, 1_700_000_000_000);
    await source.audit.append(
      Array.from({ length: 1200 }, (_, i) => ({
        id: `a${String(i).padStart(5, '0')}`,
        ts: 1_700_000_000_000 + i,
        kind: i % 3 ? 'proxy' : 'admin.key.create',
        requestId: `r${i}`,
        keyId: `key-${i % 25}`,
        tenantId: null,
        payload: { i, usage: { total_tokens: i } },
      })),
    );
    const expected = await snapshot(source);
    await source.close();

    for (let hop = 1; hop < chain.length; hop++) {
      out = '';
      expect(await runMigrateCli(['--from', chain[hop - 1], '--to', chain[hop]])).toBe(0);
      expect(out).toMatch(/audit_log\s+1200\s+1200\s+1200\s+ok/);
      expect(out).toMatch(/rate_limits\s+2\s+2\s+2\s+ok/);
      const target = await open(chain[hop]);
      expect(await snapshot(target)).toEqual(expected);
      await target.close();
    }

    // A second run copies nothing and still checks out.
    out = '';
    expect(await runMigrateCli(['--from', sqlite, '--to', postgres])).toBe(0);
    expect(out).toMatch(/virtual_keys\s+25\s+0\s+25\s+ok/);
    expect(out).toMatch(/audit_log\s+1200\s+0\s+1200\s+ok/);
    expect(out).toMatch(/rate_limits\s+2\s+0\s+2\s+ok/);
    const again = await open(postgres);
    expect(await snapshot(again)).toEqual(expected);
    await again.close();
  }, 120_000);

  it('exits non-zero when the target holds other rows, and on bad arguments', async () => {
    const other = path.join(dir, 'other.sqlite');
    const target = await open(other);
    await target.keys.create(sampleKey('already-there'));
    await target.close();
    expect(await runMigrateCli(['--from', sqlite, '--to', other])).toBe(1);
    expect(out).toMatch(/virtual_keys\s+25\s+25\s+26\s+MISMATCH/);
    expect(await runMigrateCli(['--from', sqlite])).toBe(2);
    expect(await runMigrateCli(['--from', 'ftp://nowhere', '--to', other])).toBe(1);
  }, 60_000);
});
