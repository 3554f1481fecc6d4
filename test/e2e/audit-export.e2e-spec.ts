import { execFile } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { IncomingMessage, get } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import { finished } from 'node:stream/promises';
import { promisify } from 'node:util';
import { AuditRecord } from '../../src/audit/domain/audit-record';
import { loadAppConfig } from '../../src/app-config';
import { openBackend } from '../../src/storage/open-backend';
import { ChildGateway, VERIFY_JS, errorLines, requireBuild, rssBytes, sampleRss, startChildGateway } from './child-gateway';
import { ADMIN_TOKEN } from './harness';

const ROWS = 100_000;
const CSV_ROWS = 20_000;
const MB = 1024 * 1024;
const run = promisify(execFile);

function vmHwm(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

/** Runs the verify CLI; resolves with its exit code and output (it exits 1 on a broken chain). */
async function verify(file: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [VERIFY_JS, file]);
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, output: e.stdout + e.stderr };
  }
}

/**
 * Streams an export from the child to `file`, reading it line by line as it arrives, while sampling
 * the child's RSS. Answers the line count and how far the child's RSS rose above where it started.
 */
async function download(gateway: ChildGateway, query: string, file: string): Promise<{ lines: number; growth: number; headers: IncomingMessage['headers'] }> {
  const before = rssBytes(gateway.pid);
  const hwmBefore = vmHwm(gateway.pid);
  const sampler = sampleRss(gateway.pid);
  const response = await new Promise<IncomingMessage>((resolve, reject) =>
    get(`${gateway.url}/admin/audit/export?${query}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, resolve).on('error', reject),
  );
  expect(response.statusCode).toBe(200);
  // The bytes go to the file as received; a second branch of the same stream is read line by line.
  const out = createWriteStream(file);
  const lineBranch = new PassThrough();
  response.pipe(out);
  response.pipe(lineBranch);
  let lines = 0;
  for await (const _line of createInterface({ input: lineBranch, crlfDelay: Infinity })) lines++;
  await finished(out);
  let peak = sampler.stop();
  // A peak between two samples still shows in the high-water mark, if it set a new one.
  const hwmAfter = vmHwm(gateway.pid);
  if (hwmAfter > hwmBefore) peak = Math.max(peak, hwmAfter);
  return { lines, growth: peak - before, headers: response.headers };
}

/** Rewrites line `n` (1-based) of `file` into `to` with `change`. */
function tamper(file: string, to: string, n: number, change: (line: string) => string): void {
  const lines = readFileSync(file, 'utf8').split('\n');
  const changed = change(lines[n - 1]);
  expect(changed).not.toBe(lines[n - 1]);
  lines[n - 1] = changed;
  writeFileSync(to, lines.join('\n'));
}

describe('audit export of 100,000 rows (e2e, child process)', () => {
  let dir: string;
  let gateway: ChildGateway;
  let base: number;

  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-export-'));
    // The child's old generation is capped as a container's memory limit would cap it (docs/audit.md):
    // uncapped, V8 lets even short-lived garbage pile up to its first full-GC threshold (about 128 MB
    // here), and on a CPU-starved machine (a slow reader keeps each page alive across scavenges) that
    // alone reached 52 MB of growth. Capped, a streaming export stays near 14 MB under the same
    // starvation, while one that holds the export in memory runs out of heap and fails the download.
    const env = { NODE_OPTIONS: '--max-old-space-size=96', STORAGE_BACKEND: 'sqlite', SQLITE_PATH: path.join(dir, 'ditto.sqlite'), STORAGE_FALLBACK: 'false', ADMIN_TOKEN, AUDIT_RETENTION_SECS: '0' };
    const store = await openBackend('sqlite', loadAppConfig(env).storage.options);
    base = Date.now() - 10 * 60_000;
    for (let start = 0; start < ROWS; start += 5000) {
      const batch: AuditRecord[] = [];
      for (let i = start; i < start + 5000; i++) {
        batch.push({
          id: `row-${String(i).padStart(6, '0')}`,
          ts: base + Math.floor(i / 20),
          kind: i % 10 === 0 ? 'proxy.blocked' : 'proxy',
          requestId: `req-${i}`,
          keyId: `key-${i % 50}`,
          tenantId: i % 3 === 0 ? null : 'acme',
          payload: {
            method: 'POST',
            path: '/v1/chat/completions',
            model: 'gpt-4o-mini',
            backend: 'openai',
            status: i % 10 === 0 ? 402 : 200,
            usage: { prompt_tokens: 100 + (i % 17), completion_tokens: 20, cached_tokens: 0, total_tokens: 120 + (i % 17) },
            latency_ms: 100 + (i % 400),
            stream: i % 2 === 0,
            note: i % 1000 === 0 ? 'a "quoted", comma\nand newline' : null,
          },
        });
      }
      await store.audit.append(batch);
    }
    expect(await store.audit.count()).toBe(ROWS);
    await store.close();
    gateway = await startChildGateway(env, dir);
    // Warm up the route (JIT, lazy requires) so that the measurement sees the export itself.
    await fetch(`${gateway.url}/admin/audit/export?until=${base + 1}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then((r) => r.text());
  }, 60_000);

  afterAll(async () => {
    if (gateway && gateway.process.exitCode === null) {
      gateway.process.kill('SIGTERM');
      await gateway.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('streams JSONL with constant memory; the verify CLI accepts it and names a tampered row', async () => {
    const file = path.join(dir, 'audit.jsonl');
    const { lines, growth, headers } = await download(gateway, 'format=jsonl', file);
    expect(headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
    expect(headers['content-disposition']).toMatch(/^attachment; filename=".+\.jsonl"$/);
    expect(lines).toBe(ROWS);
    expect(growth).toBeLessThan(50 * MB);

    const ok = await verify(file);
    expect(ok).toEqual({ code: 0, output: expect.stringMatching(/^OK: 100000 row\(s\) verified \(jsonl\)/) });

    const bad = path.join(dir, 'tampered.jsonl');
    tamper(file, bad, 500, (line) => line.replace('"status":200', '"status":201'));
    const broken = await verify(bad);
    expect(broken.code).toBe(1);
    expect(broken.output).toContain('row 500 ');
    expect(broken.output).toContain('hash mismatch');
    expect(errorLines(gateway.logs)).toEqual([]);
  }, 60_000);

  it('streams CSV (quoted cells, a header line); the verify CLI accepts it and names a tampered row', async () => {
    const file = path.join(dir, 'audit.csv');
    // The first CSV_ROWS rows: 20 per millisecond from `base`.
    const { lines, growth, headers } = await download(gateway, `format=csv&until=${base + CSV_ROWS / 20}`, file);
    expect(headers['content-type']).toBe('text/csv; charset=utf-8; header=present');
    // The header, then one line per row (payload cells are JSON: their strings escape line breaks).
    expect(lines).toBe(CSV_ROWS + 1);
    expect(growth).toBeLessThan(50 * MB);
    expect(readFileSync(file, 'utf8').slice(0, 200)).toMatch(/^id,ts,kind,request_id,key_id,tenant_id,payload,prev_hash,hash\r\n"row-000000",\d+,"proxy.blocked","req-0",/);

    const ok = await verify(file);
    expect(ok).toEqual({ code: 0, output: expect.stringMatching(/^OK: 20000 row\(s\) verified \(csv\)/) });

    // Row 500 is line 501 (after the header).
    const bad = path.join(dir, 'tampered.csv');
    tamper(file, bad, 501, (line) => line.replace('"key-', '"kez-'));
    const broken = await verify(bad);
    expect(broken.code).toBe(1);
    expect(broken.output).toContain('row 500 (line 501)');
  }, 60_000);

  it('stops reading the store when the client goes away mid-export', async () => {
    const response = await new Promise<IncomingMessage>((resolve, reject) =>
      get(`${gateway.url}/admin/audit/export`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, resolve).on('error', reject),
    );
    await new Promise((resolve) => response.once('data', resolve));
    response.destroy();
    const aborted = () => gateway.logs.some((l) => /^audit export \(jsonl\) aborted: \d+ row/.test(String(l.msg)));
    for (let waited = 0; !aborted() && waited < 5000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(aborted()).toBe(true);
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
    expect(errorLines(gateway.logs)).toEqual([]);
  }, 30_000);
});
