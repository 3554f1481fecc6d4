import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockUpstream, startMockUpstream } from '../../bench/mock-upstream';
import { AuditService } from '../../src/audit/audit.service';
import { AuditLogRepository } from '../../src/storage/ports/audit-log.repository';
import { RunningGateway, startGateway } from './harness';

const KEY = 'sk-ditto-timeouts-0123456789abcdefghijklm';

/** Per-backend upstream timeouts: first byte, idle between chunks, and the former `timeout_ms`. */
describe('upstream timeouts (e2e)', () => {
  let slowHeaders: MockUpstream;
  let slowChunks: MockUpstream;
  let steadyChunks: MockUpstream;
  let gateway: RunningGateway;
  let dir: string;

  beforeAll(async () => {
    slowHeaders = await startMockUpstream({ delayMs: 1500 });
    // undici checks these timeouts about every 0.5 s: a timeout fires up to about a second late.
    slowChunks = await startMockUpstream({ chunkDelayMs: 2500 });
    steadyChunks = await startMockUpstream({ chunkDelayMs: 400 });
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-timeouts-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        backends: [
          { name: 'first-byte', base_url: slowHeaders.url, first_byte_timeout_ms: 300 },
          { name: 'legacy', base_url: slowHeaders.url, timeout_ms: 300 },
          { name: 'patient', base_url: slowHeaders.url, first_byte_timeout_ms: 5000, idle_timeout_ms: 200 },
          { name: 'idle', base_url: slowChunks.url, idle_timeout_ms: 500 },
          { name: 'idle-ok', base_url: steadyChunks.url, first_byte_timeout_ms: 300, idle_timeout_ms: 2000 },
        ],
        router: {
          default_backends: ['first-byte'],
          rules: [
            { model: 'legacy', backends: ['legacy'] },
            { model: 'patient', backends: ['patient'] },
            { model: 'idle', backends: ['idle'] },
            { model: 'idle-ok', backends: ['idle-ok'] },
          ],
        },
        virtual_keys: [{ id: 'timeouts', token: KEY, budget: { total_tokens: 1_000_000 } }],
      }),
    );
    gateway = await startGateway({ STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json'), AUDIT_FLUSH_MS: '20' });
  });

  afterAll(async () => {
    await gateway?.close();
    await slowHeaders?.close();
    await slowChunks?.close();
    await steadyChunks?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const chat = (model: string, stream = false) =>
    fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stream }),
    });

  async function lastEvent(model: string) {
    await gateway.app.get(AuditService).flush();
    const rows = (await gateway.app.get(AuditLogRepository).query({}, 1000, null)).items;
    return rows.filter((r) => r.payload.model === model).at(-1)?.payload;
  }

  it('first_byte_timeout_ms, and timeout_ms without it, end a request whose answer does not start in time (504)', async () => {
    for (const model of ['gpt-4o-mini', 'legacy']) {
      const started = Date.now();
      const answer = await chat(model);
      expect([model, answer.status]).toEqual([model, 504]);
      expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('backend_timeout');
      expect(Date.now() - started).toBeLessThan(1200);
    }
  });

  it('idle_timeout_ms does not bound the wait for the headers (first_byte_timeout_ms does)', async () => {
    const answer = await chat('patient');
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(4);
  });

  it('idle_timeout_ms cuts a stream that pauses longer between chunks; the started answer is still charged', async () => {
    const started = Date.now();
    const answer = await chat('idle', true);
    expect(answer.status).toBe(200);
    await expect(answer.text()).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(2500);
    const event = await lastEvent('idle');
    expect(event).toMatchObject({ status: 200, error: 'upstream timeout mid-response' });
    expect((event?.charged as { tokens: number } | undefined)?.tokens).toBeGreaterThan(0);
  });

  it('a stream whose chunks each come within idle_timeout_ms runs longer than the first-byte timeout', async () => {
    const started = Date.now();
    const answer = await chat('idle-ok', true);
    const text = await answer.text();
    expect(Date.now() - started).toBeGreaterThan(2000);
    expect(text.trim().endsWith('data: [DONE]')).toBe(true);
  });
});
