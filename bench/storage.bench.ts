/**
 * `npm run bench:storage`: per backend, the rate of reserve+commit pairs (the budget step of one
 * request) at a concurrency of 32, and of audit appends in batches of 500. Results are printed, saved
 * as JSON under bench/results/, and appended to docs/benchmarks.md. Uses the local PostgreSQL and Redis
 * (TEST_POSTGRES_DSN, TEST_REDIS_URL) with a throw-away schema/prefix; MongoDB when MONGODB_URI is set.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { AuditRecord } from '../src/audit/domain/audit-record';
import { BackendName, StorageBackend } from '../src/storage/ports/storage-backend';
import { withStore } from './bench-store';
import { recordRun } from './record';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const CONCURRENCY = 32;
const AUDIT_BATCH = 500;

interface Result {
  backend: BackendName;
  reserveCommitPerSec: number;
  auditRowsPerSec: number;
}

async function reserveCommitRate(backend: StorageBackend): Promise<number> {
  await backend.budgets.setLimit('key:bench', Number.MAX_SAFE_INTEGER, null);
  let done = 0;
  const deadline = Date.now() + DURATION_MS;
  const start = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline) {
        const id = randomUUID();
        await backend.budgets.reserve(id, ['key:bench', 'tenant:bench'], 100);
        await backend.budgets.commit(id, 80);
        done++;
      }
    }),
  );
  return done / ((Date.now() - start) / 1000);
}

async function auditRate(backend: StorageBackend): Promise<number> {
  let rows = 0;
  let n = 0;
  const deadline = Date.now() + DURATION_MS;
  const start = Date.now();
  while (Date.now() < deadline) {
    const batch: AuditRecord[] = Array.from({ length: AUDIT_BATCH }, () => ({
      id: `${Date.now().toString(36)}-${(n++).toString(36)}-${randomUUID().slice(0, 8)}`,
      ts: Date.now(),
      kind: 'proxy',
      requestId: randomUUID(),
      keyId: 'bench',
      tenantId: 'acme',
      payload: { model: 'gpt-4o-mini', backend: 'openai', status: 200, usage: { prompt_tokens: 12, completion_tokens: 80 }, latency_ms: 42 },
    }));
    await backend.audit.append(batch);
    rows += batch.length;
  }
  return rows / ((Date.now() - start) / 1000);
}

async function main(): Promise<void> {
  const names: BackendName[] = ['memory', 'sqlite', 'postgres', 'redis'];
  if (process.env.MONGODB_URI) names.push('mongodb');
  const results: Result[] = [];
  for (const name of names) {
    const result: Result | null = await withStore(name, async (backend) => ({
      backend: name,
      reserveCommitPerSec: Math.round(await reserveCommitRate(backend)),
      auditRowsPerSec: Math.round(await auditRate(backend)),
    }));
    if (result) {
      results.push(result);
      process.stdout.write(`${name.padEnd(9)} reserve+commit/s ${String(result.reserveCommitPerSec).padStart(8)}   audit rows/s ${String(result.auditRowsPerSec).padStart(8)}\n`);
    }
  }
  const rows = results.map((r) => `| ${r.backend} | ${r.reserveCommitPerSec} | ${r.auditRowsPerSec} |`).join('\n');
  recordRun('Storage', { durationMs: DURATION_MS, concurrency: CONCURRENCY, auditBatch: AUDIT_BATCH, results }, (machine) =>
    `${machine}; ${DURATION_MS} ms per measurement; reserve+commit at concurrency ${CONCURRENCY} on two scopes; audit in batches of ${AUDIT_BATCH}.\n\n| backend | reserve+commit /s | audit rows /s |\n|---|---|---|\n${rows}`,
  );
}

void main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  },
);
