/**
 * `npm run bench:audit-prune`: per backend, how fast the retention job deletes expired audit rows
 * (rows/s, the real AuditRetentionJob with the default settings: time-bounded runs, fitted batch
 * sizes, the default pace of AUDIT_PRUNE_DUTY_PERCENT (or the value in the environment: 100 measures
 * full speed), PostgreSQL partitions, SQLite's incremental vacuum included) and what a row occupies (disk
 * for SQLite and PostgreSQL, memory for Redis, storage + indexes for MongoDB). The numbers behind
 * "Sizing" in docs/audit.md. BENCH_AUDIT_ROWS rows (default 200,000) with a typical proxy payload are
 * written through the audit port, all older than the retention, then pruned. Uses the local
 * PostgreSQL and Redis with a throw-away schema/prefix; MongoDB when MONGODB_URI is set.
 */
import 'reflect-metadata';
import { statSync } from 'node:fs';
import { Client } from 'pg';
import Redis from 'ioredis';
import mongoose from 'mongoose';
import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditRetentionJob } from '../src/audit/audit-retention.job';
import { loadAppConfig } from '../src/app-config';
import { AuditRecord } from '../src/audit/domain/audit-record';
import { MetricsService } from '../src/metrics/metrics.service';
import { BackendName, StorageBackend, StorageOptions } from '../src/storage/ports/storage-backend';
import { PG_DSN, REDIS_URL, withStore } from './bench-store';
import { recordRun } from './record';

const ROWS = Number(process.env.BENCH_AUDIT_ROWS ?? 200_000);
const DUTY = process.env.AUDIT_PRUNE_DUTY_PERCENT;
const APPEND_BATCH = 500;
const HOUR = 3_600_000;

interface Result {
  backend: BackendName;
  rows: number;
  /** Bytes one row occupies: on disk (sqlite, postgres), in memory (redis), storage + indexes (mongodb). */
  bytesPerRow: number;
  prunedPerSec: number;
  runs: number;
}

function row(n: number, ts: number): AuditRecord {
  return {
    id: `${ts.toString(36)}-bench-${n.toString(36)}`,
    ts,
    kind: n % 10 === 0 ? 'proxy.blocked' : 'proxy',
    requestId: `req-${n.toString(36)}-0f3c9a`,
    keyId: `key-${n % 50}`,
    tenantId: n % 3 === 0 ? 'acme' : null,
    payload: {
      method: 'POST',
      path: '/v1/chat/completions',
      model: 'gpt-4o-mini',
      backend: 'openai',
      status: 200,
      usage: { prompt_tokens: 12, completion_tokens: 80, cached_tokens: 0, total_tokens: 92 },
      scopes: [`key:key-${n % 50}`, 'tenant:acme'],
      charged: { tokens: 92, usd_micros: 51, basis: 'usage', overshoot_tokens: 0 },
      latency_ms: 412,
      upstream_ms: 405,
      stream: false,
      cached: false,
      aborted: false,
      attempts: [],
      error: null,
    },
  };
}

/** What the store holds for its audit rows, in bytes. */
async function footprint(name: BackendName, options: StorageOptions): Promise<number> {
  if (name === 'sqlite') {
    const size = (f: string) => {
      try {
        return statSync(f).size;
      } catch {
        return 0;
      }
    };
    return size(options.sqlite.path) + size(`${options.sqlite.path}-wal`);
  }
  if (name === 'postgres') {
    const client = new Client({ connectionString: PG_DSN });
    await client.connect();
    try {
      const { rows } = await client.query<{ bytes: string }>(
        `SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::text AS bytes FROM pg_inherits i WHERE i.inhparent = to_regclass($1)`,
        [`"${options.postgres.schema}"."audit_log"`],
      );
      return Number(rows[0].bytes);
    } finally {
      await client.end();
    }
  }
  if (name === 'redis') {
    const redis = new Redis(REDIS_URL);
    try {
      const info = await redis.info('memory');
      return Number(/used_memory:(\d+)/.exec(info)![1]);
    } finally {
      redis.disconnect();
    }
  }
  const connection = await mongoose.createConnection(options.mongodb.uri, { dbName: options.mongodb.database }).asPromise();
  try {
    const stats = (await connection.db!.command({ collStats: 'audit_log' })) as { storageSize?: number; totalIndexSize?: number; size?: number };
    return (stats.storageSize ?? stats.size ?? 0) + (stats.totalIndexSize ?? 0);
  } finally {
    await connection.close();
  }
}

async function measure(name: BackendName, backend: StorageBackend, options: StorageOptions): Promise<Result> {
  const before = await footprint(name, options);
  const oldest = Date.now() - 2 * HOUR - ROWS;
  for (let n = 0; n < ROWS; n += APPEND_BATCH) {
    await backend.audit.append(Array.from({ length: Math.min(APPEND_BATCH, ROWS - n) }, (_, i) => row(n + i, oldest + n + i)));
  }
  const filled = await footprint(name, options);
  const config = loadAppConfig({ AUDIT_RETENTION_SECS: '3600', AUDIT_PRUNE_DUTY_PERCENT: DUTY });
  const job = new AuditRetentionJob(backend.audit, backend.locks, new SchedulerRegistry(), config.audit, new MetricsService());
  const started = Date.now();
  let runs = 0;
  while ((await backend.audit.count()) > 0) {
    await job.tick();
    runs++;
  }
  const seconds = (Date.now() - started) / 1000;
  return { backend: name, rows: ROWS, bytesPerRow: Math.round((filled - before) / ROWS), prunedPerSec: Math.round(ROWS / seconds), runs };
}

async function main(): Promise<void> {
  const names: BackendName[] = ['sqlite', 'postgres', 'redis'];
  if (process.env.MONGODB_URI) names.push('mongodb');
  const results: Result[] = [];
  for (const name of names) {
    const result = await withStore(name, (backend, options) => measure(name, backend, options));
    if (result) {
      results.push(result);
      process.stdout.write(`${name.padEnd(9)} ${result.rows} rows   ${String(result.bytesPerRow).padStart(6)} bytes/row   pruned ${String(result.prunedPerSec).padStart(8)} rows/s in ${result.runs} run(s)\n`);
    }
  }
  const table = results.map((r) => `| ${r.backend} | ${r.bytesPerRow} | ${r.prunedPerSec} | ${r.runs} |`).join('\n');
  const duty = loadAppConfig({ AUDIT_PRUNE_DUTY_PERCENT: DUTY }).audit.pruneDutyPercent;
  recordRun('Audit prune', { rows: ROWS, dutyPercent: duty, results }, (machine) =>
    `${machine}; ${ROWS} expired rows with a typical proxy payload, pruned by the retention job with the default batch settings at AUDIT_PRUNE_DUTY_PERCENT=${duty}.\n\n| backend | bytes per row | pruned rows /s | runs |\n|---|---|---|---|\n${table}`,
  );
}

void main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  },
);
