import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { GatewayError } from '../common/errors/gateway-error';
import { MultipartScanner, boundaryOf, readUploadHead } from './multipart-head';

const B = 'XyZ-boundary_0123';
const TYPE = `multipart/form-data; boundary=${B}`;

function field(name: string, value: string, extra = ''): string {
  return `--${B}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n${value}\r\n`;
}
function file(name: string, content: string | Buffer, filename = 'a.wav'): Buffer {
  return Buffer.concat([
    Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: audio/wav\r\n\r\n`),
    Buffer.isBuffer(content) ? content : Buffer.from(content),
    Buffer.from('\r\n'),
  ]);
}
const close = `--${B}--\r\n`;
const body = (...parts: Array<string | Buffer>) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));

/** Feeds `bytes` in pieces of `size`, then ends; returns the scanner or the 400's message. */
function scan(bytes: Buffer, size = bytes.length): MultipartScanner | string {
  const scanner = new MultipartScanner(B);
  try {
    for (let at = 0; at < bytes.length; at += size) scanner.feed(bytes.subarray(at, at + size));
    scanner.end();
    return scanner;
  } catch (error) {
    expect(error).toBeInstanceOf(GatewayError);
    return (error as Error).message;
  }
}

describe('multipart boundary', () => {
  it('reads it plain or quoted, and refuses none, two or an invalid one', () => {
    expect(boundaryOf(TYPE)).toBe(B);
    expect(boundaryOf('multipart/form-data; charset=utf-8; BOUNDARY="a b:c"')).toBe('a b:c');
    expect(() => boundaryOf('multipart/form-data')).toThrow(/needs a boundary/);
    expect(() => boundaryOf('multipart/form-data; boundary=a; boundary=b')).toThrow(/more than one boundary/);
    expect(() => boundaryOf('multipart/form-data; boundary=')).toThrow(/1-70 characters/);
    expect(() => boundaryOf(`multipart/form-data; boundary=${'a'.repeat(71)}`)).toThrow(/1-70 characters/);
  });
});

describe('MultipartScanner', () => {
  const audio = Buffer.alloc(100_000, 7);
  const good = body(field('model', 'whisper-1'), field('language', 'en'), file('file', audio), close);

  it.each([1, 3, 17, 22, 25, 50, 64, 4096, good.length])('finds the model and accepts a well-formed body fed %i bytes at a time', (size) => {
    const result = scan(good, size);
    expect(result).toBeInstanceOf(MultipartScanner);
    expect((result as MultipartScanner).model).toBe('whisper-1');
  });

  it('finds a model that comes after the file, and knows a file came first', () => {
    const scanner = scan(body(file('file', audio), field('model', 'whisper-1'), close)) as MultipartScanner;
    expect(scanner.model).toBe('whisper-1');
    expect(scanner.fileSeen).toBe(true);
  });

  it('accepts a preamble, an empty value, an epilogue, and no model at all', () => {
    const scanner = scan(body('preamble\r\n', field('purpose', ''), file('file', 'x'), close, 'epilogue')) as MultipartScanner;
    expect(scanner.model).toBeNull();
  });

  it.each([
    ['the model twice', body(field('model', 'gpt-4o-mini'), file('file', 'x'), field('model', 'whisper-1'), close), /names the model more than once/],
    ['the model twice, in another case', body(field('model', 'a'), field('MODEL', 'b'), close), /more than once/],
    ['the model as a file', body(file('model', 'whisper-1'), close), /must be a text field/],
    ['a model longer than 1 KiB', body(field('model', 'm'.repeat(1025)), close), /longer than 1024 bytes/],
    ['no closing boundary', body(field('model', 'whisper-1'), file('file', 'x')), /ended before its closing boundary/],
    ['a boundary inside content', body(field('model', 'a'), file('file', `data--${B}more`), close), /without CRLF before it/],
    ['a bare-LF delimiter hiding a part', body(field('model', 'a'), file('file', `x\n--${B}\nContent-Disposition: form-data; name="model"\n\nb\n`), close), /without CRLF before it/],
    ['padding after a delimiter', body(`--${B}  \r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n`, close), /followed by something other than CRLF/],
    ['a part without Content-Disposition', body(`--${B}\r\nContent-Type: text/plain\r\n\r\nv\r\n`, close), /no Content-Disposition/],
    ['a part without headers', body(`--${B}\r\n\r\nv\r\n`, close), /no Content-Disposition/],
    ['two Content-Dispositions', body(`--${B}\r\nContent-Disposition: form-data; name="a"\r\nContent-Disposition: form-data; name="model"\r\n\r\nv\r\n`, close), /two Content-Disposition/],
    ['name*', body(`--${B}\r\nContent-Disposition: form-data; name="a"; name*=UTF-8''model\r\n\r\nv\r\n`, close), /'name\*' is not accepted/],
    ['a name given twice', body(`--${B}\r\nContent-Disposition: form-data; name="a"; name="model"\r\n\r\nv\r\n`, close), /'name' twice/],
    ['a backslash escape in a name', body(`--${B}\r\nContent-Disposition: form-data; name="mo\\"del"\r\n\r\nv\r\n`, close), /no backslash escapes/],
    ['a folded header line', body(`--${B}\r\nContent-Disposition: form-data;\r\n name="model"\r\n\r\nv\r\n`, close), /folded/],
    ['a base64 part', body(`--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Transfer-Encoding: base64\r\n\r\nd2hpc3Blci0x\r\n`, close), /Content-Transfer-Encoding/],
    ['another disposition type', body(`--${B}\r\nContent-Disposition: attachment; name="model"\r\n\r\nv\r\n`, close), /not form-data/],
    ['a boundary after the close', body(field('a', 'b'), close, `--${B}\r\n`), /after the closing boundary/],
    ['headers larger than 8 KiB', body(`--${B}\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ${'p'.repeat(9000)}\r\n\r\nv\r\n`, close), /headers are larger/],
  ])('refuses %s', (_name, bytes, problem) => {
    for (const size of [1, 7, 23, 40, bytes.length]) expect(scan(bytes, size)).toMatch(problem);
  });
});

/** A request-like emitter for readUploadHead (only `complete` and `close` are used). */
function fakeRequest(): IncomingMessage {
  return Object.assign(new EventEmitter(), { complete: false }) as unknown as IncomingMessage;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('readUploadHead', () => {
  it('resolves with the model before the file arrives, and sends every byte in order', async () => {
    const source = new PassThrough();
    // The model field is complete once the next delimiter arrives: here, the file part's.
    const whole = body(field('model', 'whisper-1'), file('file', Buffer.alloc(300_000, 3)), close);
    const start = whole.subarray(0, 200);
    const later = whole.subarray(200);
    source.write(start);
    const head = await readUploadHead(fakeRequest(), source, TYPE, () => new Error('gone'));
    expect(head.model).toBe('whisper-1');
    source.end(later);
    expect((await collect(head.stream)).equals(Buffer.concat([start, later]))).toBe(true);
  });

  it('stops at the first file part when the model has not come yet, buffering no more than the head', async () => {
    const source = new PassThrough();
    source.write(file('file', 'RIFF'));
    const head = await readUploadHead(fakeRequest(), source, TYPE, () => new Error('gone'));
    expect(head.model).toBeNull();
    source.end(body(field('model', 'whisper-1'), close));
    expect((await collect(head.stream)).toString()).toContain('name="model"');
  });

  it('counts only a model before the first file part and within the bound, however the bytes arrive', async () => {
    const afterFile = new PassThrough();
    afterFile.end(body(file('file', 'RIFF'), field('model', 'whisper-1'), close));
    expect((await readUploadHead(fakeRequest(), afterFile, TYPE, () => new Error('gone'))).model).toBeNull();
    const pastBound = new PassThrough();
    pastBound.end(body(field('prompt', 'p'.repeat(2000)), field('model', 'whisper-1'), close));
    expect((await readUploadHead(fakeRequest(), pastBound, TYPE, () => new Error('gone'), 1024)).model).toBeNull();
    const first = new PassThrough();
    first.end(body(field('model', 'whisper-1'), file('file', 'RIFF'), close));
    expect((await readUploadHead(fakeRequest(), first, TYPE, () => new Error('gone'), 1024)).model).toBe('whisper-1');
  });

  it('stops at the bound when neither comes', async () => {
    const source = new PassThrough();
    source.write(body(field('prompt', 'p'.repeat(70_000))));
    const head = await readUploadHead(fakeRequest(), source, TYPE, () => new Error('gone'), 64 * 1024);
    expect(head.model).toBeNull();
    source.end(close);
    await collect(head.stream);
  });

  it('refuses a fault in the head before anything is sent, and cuts the stream at a later one', async () => {
    const early = new PassThrough();
    early.end(body(`--${B}\r\n\r\nv\r\n`, close));
    await expect(readUploadHead(fakeRequest(), early, TYPE, () => new Error('gone'))).rejects.toThrow(/no Content-Disposition/);

    const late = new PassThrough();
    late.write(body(field('model', 'gpt-4o-mini'), file('file', 'x')));
    const head = await readUploadHead(fakeRequest(), late, TYPE, () => new Error('gone'));
    expect(head.model).toBe('gpt-4o-mini');
    late.end(body(field('model', 'whisper-1'), close));
    await expect(collect(head.stream)).rejects.toThrow(/names the model more than once/);
  });

  it('passes on the source error (413, 408) and a client that left', async () => {
    const failing = new PassThrough();
    const pending = readUploadHead(fakeRequest(), failing, TYPE, () => new Error('gone'));
    failing.destroy(new Error('too large'));
    await expect(pending).rejects.toThrow('too large');

    const request = fakeRequest();
    const left = readUploadHead(request, new PassThrough(), TYPE, () => new Error('gone'));
    request.emit('close');
    await expect(left).rejects.toThrow('gone');
  });
});
