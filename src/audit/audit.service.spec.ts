import { loadAppConfig } from '../config/app-config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryAuditLogRepository } from '../storage/backends/memory/memory-audit-log.repository';
import { AuditService } from './audit.service';

/** A repository whose writes fail while `failing` is set. */
class FlakyRepository extends MemoryAuditLogRepository {
  failing = false;
  override async append(records: Parameters<MemoryAuditLogRepository['append']>[0]): Promise<void> {
    if (this.failing) throw new Error('store down');
    return super.append(records);
  }
}

async function metric(metrics: MetricsService, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await metrics.registry.getSingleMetric(name)!.get()).values;
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
}

function setup(env: Record<string, string> = {}) {
  const repository = new FlakyRepository();
  const metrics = new MetricsService();
  const config = loadAppConfig({ STORAGE_BACKEND: 'memory', AUDIT_FLUSH_MS: '10000', AUDIT_BATCH_SIZE: '50', AUDIT_QUEUE_MAX: '100', ...env });
  return { repository, metrics, service: new AuditService(repository, config, metrics) };
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
});
