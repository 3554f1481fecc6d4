import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { FaithfulMock, startFaithfulMock } from '../fixtures/openai-faithful-mock';
import { RunningGateway, startGateway } from './harness';

const KEY = 'sk-ditto-uploads-0123456789abcdefghijklmn';
const LIMIT = 1024 * 1024;
const run = promisify(execFile);

/** A multipart body with one file part and a model field, as a list of pieces. */
function multipart(boundary: string, file: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n`),
    file,
    Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--${boundary}--\r\n`),
  ]);
}

/**
 * Sends headers announcing a body with `Expect: 100-continue` and waits for the gateway's first
 * answer: a `100 Continue` (then sends `body`) or a final status without it (then sends nothing).
 */
function expectContinue(url: string, requestPath: string, headers: Record<string, string | number>, body: Buffer): Promise<{ status: number; continued: boolean; text: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let continued = false;
    const req = httpRequest({ host: hostname, port, method: 'POST', path: requestPath, headers: { authorization: `Bearer ${KEY}`, expect: '100-continue', ...headers } });
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, continued, text });
        req.destroy();
      });
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

/** Multipart uploads through the gateway: limits, `Expect`, content-length, and curl. */
describe('uploads (e2e)', () => {
  let upstream: FaithfulMock;
  let gateway: RunningGateway;
  let limited: RunningGateway;
  let dir: string;

  beforeAll(async () => {
    upstream = await startFaithfulMock();
    dir = mkdtempSync(path.join(tmpdir(), 'ditto-uploads-'));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({ backends: [{ name: 'openai', base_url: upstream.url }], router: { default_backends: ['openai'] }, virtual_keys: [{ id: 'uploads', token: KEY }] }),
    );
    const env = { STORAGE_BACKEND: 'memory', GATEWAY_CONFIG: path.join(dir, 'gateway.json') };
    gateway = await startGateway(env);
    limited = await startGateway({ ...env, UPLOAD_LIMIT_BYTES: String(LIMIT), BODY_LIMIT_BYTES: String(64 * 1024) });
  });

  afterAll(async () => {
    await gateway?.close();
    await limited?.close();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    upstream.requests.length = 0;
  });

  it('curl -F with a 30 MB file (curl sends Expect: 100-continue itself) succeeds, the file intact', async () => {
    const file = randomBytes(30 * 1000 * 1000);
    const filePath = path.join(dir, 'speech.wav');
    writeFileSync(filePath, file);
    const { stdout, stderr } = await run('curl', ['-sS', '-v', '--fail-with-body', '-H', `Authorization: Bearer ${KEY}`, '-F', `file=@${filePath}`, '-F', 'model=whisper-1', `${gateway.url}/v1/audio/transcriptions`], {
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(stderr).toMatch(/^> Expect: 100-continue/m);
    expect(stderr).toMatch(/^< HTTP\/1.1 100 Continue/m);
    expect(JSON.parse(stdout).text).toBe(`transcribed ${file.length} bytes`);
    const seen = upstream.requests[0];
    expect(seen.files[0]).toMatchObject({ size: file.length, sha256: createHash('sha256').update(file).digest('hex') });
    expect(seen.headers['content-length']).toBe(String(seen.bytes));
    expect(seen.headers.expect).toBeUndefined();
  });

  it('with Expect: 100-continue, a body announced over its limit is refused before it is sent (413, no 100 Continue)', async () => {
    const upload = await expectContinue(limited.url, '/v1/audio/transcriptions', { 'content-type': 'multipart/form-data; boundary=b', 'content-length': LIMIT + 1 }, Buffer.alloc(0));
    expect(upload).toMatchObject({ status: 413, continued: false });
    expect(JSON.parse(upload.text).error).toMatchObject({ code: 'request_too_large' });
    expect(upload.text).toMatch(/UPLOAD_LIMIT_BYTES/);
    // JSON has its own, smaller limit.
    const json = await expectContinue(limited.url, '/v1/chat/completions', { 'content-type': 'application/json', 'content-length': 64 * 1024 + 1 }, Buffer.alloc(0));
    expect(json).toMatchObject({ status: 413, continued: false });
    expect(json.text).toMatch(/BODY_LIMIT_BYTES/);
    // An upload where the route takes none: 415 before the body, too.
    const wrongRoute = await expectContinue(limited.url, '/v1/chat/completions', { 'content-type': 'multipart/form-data; boundary=b', 'content-length': 100 }, Buffer.alloc(0));
    expect(wrongRoute).toMatchObject({ status: 415, continued: false });
    // Within the limits: 100 Continue, then the body goes through.
    // A boundary as clients make them: long and random. The gateway refuses `--<boundary>` anywhere in
    // content (docs/security.md), which random bytes would hit for a one-letter boundary (~6% per MiB).
    const boundary = `----ditto-test-${randomBytes(12).toString('hex')}`;
    const body = multipart(boundary, randomBytes(LIMIT - 1000));
    const fits = await expectContinue(limited.url, '/v1/audio/transcriptions', { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length }, body);
    expect(fits).toMatchObject({ status: 200, continued: true });
    expect(upstream.requests).toHaveLength(1);
  });

  it('an upload sent chunked is counted as it arrives: over the limit it gets a 413 the client reads, and the upstream gets no complete request', async () => {
    const boundary = 'chunky';
    const send = (total: number) =>
      fetch(`${limited.url}/v1/audio/transcriptions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
        body: new ReadableStream({
          async start(controller) {
            const body = multipart(boundary, randomBytes(total));
            for (let at = 0; at < body.length; at += 64 * 1024) {
              controller.enqueue(body.subarray(at, at + 64 * 1024));
              await new Promise((r) => setImmediate(r));
            }
            controller.close();
          },
        }),
        duplex: 'half',
      } as RequestInit);
    const refused = await send(3 * LIMIT);
    expect(refused.status).toBe(413);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/larger than 1048576 bytes/);
    expect(upstream.requests).toHaveLength(0);
    const fits = await send(LIMIT / 2);
    expect(fits.status).toBe(200);
    // Chunked in, chunked out: there was no length to keep.
    expect(upstream.requests[0].headers['transfer-encoding']).toBe('chunked');
    expect(upstream.requests[0].files[0].size).toBe(LIMIT / 2);
  });
});
