import { Logger } from '@nestjs/common';
import { PinoLogger } from '../common/logging/pino-logger';
import { loadAppConfig } from '../app-config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryAuditLogRepository } from '../storage/backends/memory/memory-audit-log.repository';
import { AuditService } from './audit.service';
import { AuditRecord } from './domain/audit-record';
import { canonicalJson } from './export/hash-chain';

/**
 * A repository whose writes fail while `failing` is set (the store is down), and that refuses, like a
 * store with a constraint, any batch holding a record whose payload has `refuse: true`. Refused writes
 * throw a plain Error: the service cannot tell them from an outage by the error alone.
 */
class FlakyRepository extends MemoryAuditLogRepository {
  failing = false;
  calls = 0;
  /** Called at the start of each write, with its number. */
  onAppend: (call: number) => void = () => undefined;
  override async append(records: AuditRecord[]): Promise<void> {
    this.onAppend(++this.calls);
    if (this.failing) throw new Error('store down');
    if (records.some((r) => r.payload.refuse === true)) throw new Error('check constraint violated');
    return super.append(records);
  }

  async all(): Promise<AuditRecord[]> {
    const rows: AuditRecord[] = [];
    for await (const batch of this.scan({}, 1000)) rows.push(...batch);
    return rows;
  }
}

/** Captures the Nest log lines written while `run` runs. */
async function logsOf(run: () => Promise<void>): Promise<Array<Record<string, unknown>>> {
  const lines: Array<Record<string, unknown>> = [];
  Logger.overrideLogger(new PinoLogger('info', { write: (line: string) => lines.push(JSON.parse(line)) }));
  try {
    await run();
  } finally {
    Logger.overrideLogger(false);
  }
  return lines;
}

/** Nesting depth of a JSON value (a scalar is 0). */
function depthOf(value: unknown): number {
  let depth = 0;
  let level: unknown[] = [value];
  while (level.length > 0) {
    const next: unknown[] = [];
    for (const v of level) if (typeof v === 'object' && v !== null) next.push(...Object.values(v));
    if (level.some((v) => typeof v === 'object' && v !== null)) depth++;
    level = next;
  }
  return depth;
}

async function metric(metrics: MetricsService, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await metrics.registry.getSingleMetric(name)!.get()).values;
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
}

function setup(env: Record<string, string> = {}) {
  const repository = new FlakyRepository();
  const metrics = new MetricsService();
  const config = loadAppConfig({ STORAGE_BACKEND: 'memory', AUDIT_FLUSH_MS: '10000', AUDIT_BATCH_SIZE: '50', AUDIT_QUEUE_MAX: '100', ...env });
  return { repository, metrics, service: new AuditService(repository, config.audit, metrics) };
}

const event = (i: number) => ({ kind: 'proxy', keyId: `k${i}`, payload: { i } });

describe('AuditService', () => {
  it('writes batches, counts written rows, and flushes the rest on shutdown', async () => {
    const { repository, metrics, service } = setup({ AUDIT_QUEUE_MAX: '1000' });
    for (let i = 0; i < 120; i++) service.record(event(i));
    await service.onApplicationShutdown();
    expect(await repository.count()).toBe(120);
    expect(await metric(metrics, 'ditto_audit_written_total')).toBe(120);
    expect(await metric(metrics, 'ditto_audit_dropped_total', { reason: 'queue_full' })).toBe(0);
  });

  it('drops (and counts) events beyond AUDIT_QUEUE_MAX while the store is down, keeps the rest for a retry', async () => {
    const { repository, metrics, service } = setup();
    repository.failing = true;
    for (let i = 0; i < 130; i++) service.record(event(i));
    await service.flush();
    expect(service.queued).toBe(100);
    expect(service.dropped).toBe(30);
    expect(await metric(metrics, 'ditto_audit_dropped_total', { reason: 'queue_full' })).toBe(30);
    expect(await metric(metrics, 'ditto_audit_write_errors_total')).toBeGreaterThanOrEqual(1);
    repository.failing = false;
    await service.flush();
    expect(await repository.count()).toBe(100);
    expect(service.queued).toBe(0);
    await service.onApplicationShutdown();
  });

  it('counts what it cannot write at shutdown instead of losing it silently', async () => {
    const { repository, metrics, service } = setup();
    repository.failing = true;
    for (let i = 0; i < 10; i++) service.record(event(i));
    await service.onApplicationShutdown();
    expect(service.queued).toBe(0);
    expect(await metric(metrics, 'ditto_audit_dropped_total', { reason: 'shutdown' })).toBe(10);
  });

  it('stores a payload JSON cannot hold (40,000 levels deep, circular, BigInt, a function) bounded, and keeps writing', async () => {
    const { repository, metrics, service } = setup({ AUDIT_QUEUE_MAX: '1000' });
    // What JSON.parse makes of a 80 KB body of nested arrays: fine to hold, fatal to serialise recursively.
    const deepArray = JSON.parse('['.repeat(40_000) + ']'.repeat(40_000));
    const deepObject = JSON.parse('{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000));
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    service.record({ kind: 'proxy', keyId: 'k-deep', payload: { body: deepArray, other: deepObject } });
    service.record({ kind: 'proxy', keyId: 'k-odd', payload: { circular, big: 10n ** 30n, fn: () => 1, when: new Date(0) } });
    for (let i = 0; i < 5; i++) service.record(event(i));
    await service.flush();
    const rows = await repository.all();
    expect(rows.map((r) => r.keyId).sort()).toEqual(['k-deep', 'k-odd', 'k0', 'k1', 'k2', 'k3', 'k4']);
    for (const row of rows) {
      // Every stored payload is plain JSON the export can hash, nested at most 32 levels.
      expect(() => canonicalJson(row.payload)).not.toThrow();
      expect(JSON.parse(JSON.stringify(row.payload))).toEqual(row.payload);
      expect(depthOf(row.payload)).toBeLessThanOrEqual(32);
    }
    const odd = rows.find((r) => r.keyId === 'k-odd')!.payload;
    expect(odd).toEqual({ circular: { name: 'loop', self: '[circular]' }, big: '1' + '0'.repeat(30), when: '1970-01-01T00:00:00.000Z' });
    expect(JSON.stringify(rows.find((r) => r.keyId === 'k-deep')!.payload)).toContain('[truncated: nested too deep]');
    expect(await metric(metrics, 'ditto_audit_written_total')).toBe(7);
    await service.onApplicationShutdown();
  });

  it('drops the event a store refuses, logs its id (never its payload), and writes the rest of its batch', async () => {
    const { repository, metrics, service } = setup({ AUDIT_QUEUE_MAX: '1000', AUDIT_BATCH_SIZE: '100' });
    const logs = await logsOf(async () => {
      for (let i = 0; i < 40; i++) service.record(i === 17 ? { kind: 'proxy', requestId: 'req-17', keyId: 'k17', payload: { refuse: true, prompt: 'my secret prompt' } } : event(i));
      await service.flush();
      for (let i = 40; i < 45; i++) service.record(event(i));
      await service.flush();
    });
    const rows = await repository.all();
    expect(rows).toHaveLength(44);
    expect(rows.map((r) => r.keyId)).not.toContain('k17');
    expect(service.queued).toBe(0);
    expect(await metric(metrics, 'ditto_audit_dropped_total', { reason: 'rejected' })).toBe(1);
    const errors = logs.filter((l) => l.level === 'error');
    const refusal = errors.find((l) => String(l.msg).includes('req-17'));
    expect(refusal?.msg).toMatch(/^audit event [0-9a-z]{23} \(proxy, request req-17\) refused by the store, dropped/);
    expect(JSON.stringify(logs)).not.toContain('my secret prompt');
    await service.onApplicationShutdown();
  });

  it('drops nothing while the store is down, whatever the batch holds; writes it all once the store is back', async () => {
    const { repository, metrics, service } = setup({ AUDIT_QUEUE_MAX: '1000', AUDIT_BATCH_SIZE: '64' });
    repository.failing = true;
    for (let i = 0; i < 200; i++) service.record(event(i));
    await service.flush();
    await service.flush();
    expect(service.queued).toBe(200);
    expect(service.dropped).toBe(0);
    // An outage costs a bounded number of calls per attempt, not one per event.
    expect(repository.calls).toBeLessThan(40);
    repository.failing = false;
    for (let attempt = 0; attempt < 10 && service.queued > 0; attempt++) await service.flush();
    expect((await repository.all()).length).toBe(200);
    expect(await metric(metrics, 'ditto_audit_dropped_total', { reason: 'rejected' })).toBe(0);
    await service.onApplicationShutdown();
  });

  it('writes events that failed alone during a quiet outage once the store is back, without waiting for new traffic', async () => {
    // Low traffic: each event is flushed on its own, so each fails alone and waits among the suspects.
    const { repository, service } = setup({ AUDIT_FLUSH_MS: '10', AUDIT_QUEUE_MAX: '1000' });
    repository.failing = true;
    for (let i = 0; i < 3; i++) {
      service.record(event(i));
      await service.flush();
    }
    expect(service.queued).toBe(3);
    repository.failing = false;
    // No event is recorded after the outage: the retry timer alone must write them (within its 1 s delay).
    const start = Date.now();
    while (service.queued > 0 && Date.now() - start < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(service.queued).toBe(0);
    expect((await repository.all()).map((r) => r.payload.i).sort()).toEqual([0, 1, 2]);
    expect(service.dropped).toBe(0);
    await service.onApplicationShutdown();
  });

  it('tries a quiet outage\'s events again with a growing delay while the store stays down', async () => {
    const { repository, service } = setup({ AUDIT_FLUSH_MS: '10', AUDIT_QUEUE_MAX: '1000' });
    repository.failing = true;
    service.record(event(0));
    await service.flush();
    const calls = repository.calls;
    // Tries at about 1 s and 3 s (1 s, then 2 s later), not in a loop.
    await new Promise((r) => setTimeout(r, 3500));
    expect(repository.calls - calls).toBeGreaterThanOrEqual(1);
    expect(repository.calls - calls).toBeLessThanOrEqual(2);
    expect(service.queued).toBe(1);
    expect(service.dropped).toBe(0);
    repository.failing = false;
    await service.onApplicationShutdown();
    expect((await repository.all()).length).toBe(1);
  });

  it('counts each waiting event once while a failing batch is split (queue depth, AUDIT_QUEUE_MAX)', async () => {
    const { repository, metrics, service } = setup({ AUDIT_QUEUE_MAX: '100', AUDIT_BATCH_SIZE: '8' });
    repository.failing = true;
    let recorded = 0;
    const depths: Array<{ depth: number; recorded: number }> = [];
    repository.onAppend = (call) => {
      depths.push({ depth: service.queued, recorded });
      // Two events alone have failed by the 6th call (they wait for a retry alone) while the first batch
      // of 8 is still being tried: room for 2 more events, no less.
      if (call === 6) for (let i = 0; i < 2; i++, recorded++) service.record(event(1000 + i));
    };
    for (; recorded < 98; ) service.record(event(recorded++));
    await service.flush();
    expect(repository.calls).toBeGreaterThanOrEqual(6);
    expect(depths.filter((d) => d.depth !== d.recorded)).toEqual([]);
    expect(service.dropped).toBe(0);
    expect(await metric(metrics, 'ditto_audit_queue_depth')).toBe(100);
    repository.failing = false;
    for (let attempt = 0; attempt < 20 && service.queued > 0; attempt++) await service.flush();
    expect((await repository.all()).length).toBe(100);
    expect(await metric(metrics, 'ditto_audit_queue_depth')).toBe(0);
    await service.onApplicationShutdown();
  });

  it('a batch made only of refused events does not hold back the events behind it', async () => {
    const { repository, service } = setup({ AUDIT_QUEUE_MAX: '1000', AUDIT_BATCH_SIZE: '50', AUDIT_FLUSH_MS: '10' });
    for (let i = 0; i < 50; i++) service.record({ kind: 'proxy', keyId: `bad${i}`, payload: { refuse: true } });
    for (let i = 0; i < 50; i++) service.record(event(i));
    const started = Date.now();
    // Each flush is one retry; in the service they are at least a second apart.
    for (let retry = 0; retry < 5 && (await repository.count()) < 50; retry++) await service.flush();
    expect(await repository.count()).toBe(50);
    expect(Date.now() - started).toBeLessThan(1000);
    await service.onApplicationShutdown();
    expect((await repository.all()).every((r) => r.keyId?.startsWith('k'))).toBe(true);
    // Refused with an error that does not say so, an event is dropped only once writes of others succeed
    // around its own failures; those still waiting at shutdown are counted there.
    expect(service.dropped).toBe(50);
  });

  it('bounds the queue by bytes as well as by events (AUDIT_QUEUE_MAX_BYTES), and counts the overflow', async () => {
    const { repository, metrics, service } = setup({ AUDIT_QUEUE_MAX: '100000', AUDIT_QUEUE_MAX_BYTES: String(4 * 1024 * 1024) });
    repository.failing = true;
    const body = 'x'.repeat(200 * 1024);
    for (let i = 0; i < 100; i++) service.record({ kind: 'proxy', keyId: `big${i}`, payload: { request_body: body + i } });
    expect(service.queuedBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(service.queued).toBeGreaterThanOrEqual(15);
    expect(service.queued).toBeLessThan(21);
    expect(await metric(metrics, 'ditto_audit_dropped_total', { reason: 'queue_bytes' })).toBe(100 - service.queued);
    await service.onApplicationShutdown();
  });
});
