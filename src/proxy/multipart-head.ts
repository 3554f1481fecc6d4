import type { IncomingMessage } from 'node:http';
import { Readable, Transform } from 'node:stream';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';

/**
 * Multipart uploads (`multipart/form-data`) are streamed upstream, never held whole, yet the model
 * they name must be known before dispatch (allow-list, routing, pricing). So the gateway reads the
 * head of the upload, up to MULTIPART_HEAD_MAX_BYTES, until it has the `model` field, or the first
 * file part begins (the model, if any, comes after the file: it is not waited for), and keeps those
 * bytes to send first. The rest is streamed through the same scanner, which checks the whole body,
 * fail-closed, so that no parser upstream can read a part the gateway did not see:
 *
 * - every occurrence of `--<boundary>` is a delimiter: preceded by CRLF (or the very start of the
 *   body), followed by CRLF or, once, `--` (the close); padding after a delimiter, bare-LF
 *   delimiters and a boundary inside content are refused;
 * - every part has exactly one `Content-Disposition: form-data` with a plain `name` (quoted without
 *   `\` or a token; `name*` and folded header lines are refused), and at most an identity
 *   `Content-Transfer-Encoding`;
 * - a part named `model` (any case) appears at most once and is a text field of at most
 *   MODEL_VALUE_MAX_BYTES: an upload that names its model twice is refused, whichever part comes later;
 * - the body ends with its close delimiter.
 *
 * A fault found in the head is answered 400 before anything is sent upstream; one found later cuts
 * the upload (the upstream gets an incomplete request, which it cannot act on) and is answered 400.
 */
export const MULTIPART_HEAD_MAX_BYTES = 64 * 1024;
const PART_HEADERS_MAX_BYTES = 8 * 1024;
export const MODEL_VALUE_MAX_BYTES = 1024;

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/s;
/** RFC 2046 bchars, 1-70 of them, not ending in a space. */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

function refuse(why: string): GatewayError {
  return new GatewayError(ErrorCode.InvalidRequest, `malformed multipart/form-data body: ${why}`);
}

/** The boundary of a `multipart/form-data` content-type; 400 when it has none, two, or an invalid one. */
export function boundaryOf(contentType: string): string {
  const found: string[] = [];
  for (const param of contentType.split(';').slice(1)) {
    const at = param.indexOf('=');
    if (at === -1) continue;
    if (param.slice(0, at).trim().toLowerCase() !== 'boundary') continue;
    let value = param.slice(at + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    found.push(value);
  }
  if (found.length === 0) throw new GatewayError(ErrorCode.InvalidRequest, 'a multipart/form-data content-type needs a boundary parameter');
  if (found.length > 1) throw new GatewayError(ErrorCode.InvalidRequest, 'the multipart/form-data content-type has more than one boundary parameter');
  if (!BOUNDARY.test(found[0])) throw new GatewayError(ErrorCode.InvalidRequest, 'the multipart/form-data boundary must be 1-70 characters of RFC 2046 (letters, digits, \'()+_,-./:=? and inner spaces)');
  return found[0];
}

interface Part {
  name: string;
  file: boolean;
}

/** A part's headers: its Content-Disposition name and whether it is a file; refuses what has no single meaning. */
function parsePartHeaders(block: string): Part {
  let disposition: string | null = null;
  for (const line of block === '' ? [] : block.split('\r\n')) {
    if (line.startsWith(' ') || line.startsWith('\t')) throw refuse('folded part header lines are not accepted');
    const match = HEADER_LINE.exec(line);
    if (!match) throw refuse(`a part header line is not "Name: value"`);
    const name = match[1].toLowerCase();
    if (name === 'content-disposition') {
      if (disposition !== null) throw refuse('a part has two Content-Disposition headers');
      disposition = match[2];
    } else if (name === 'content-transfer-encoding' && !/^(7bit|8bit|binary)$/i.test(match[2])) {
      throw refuse(`Content-Transfer-Encoding '${match[2]}' is not accepted (send the part as it is)`);
    }
  }
  if (disposition === null) throw refuse('a part has no Content-Disposition header');
  return parseDisposition(disposition);
}

function parseDisposition(value: string): Part {
  const semicolon = value.indexOf(';');
  const type = (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase();
  if (type !== 'form-data') throw refuse(`a part's Content-Disposition is '${type}', not form-data`);
  const params = new Map<string, string>();
  let rest = semicolon === -1 ? '' : value.slice(semicolon + 1);
  while (rest.trim() !== '') {
    const match = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("[^"\\\r\n]*"|[!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:;|$)/.exec(rest);
    if (!match) throw refuse('a Content-Disposition parameter is not name=token or name="text" (no backslash escapes)');
    const key = match[1].toLowerCase();
    if (params.has(key)) throw refuse(`a Content-Disposition has '${key}' twice`);
    params.set(key, match[2].startsWith('"') ? match[2].slice(1, -1) : match[2]);
    rest = rest.slice(match[0].length);
  }
  if (params.has('name*')) throw refuse("'name*' is not accepted in a Content-Disposition (send a plain name)");
  const name = params.get('name');
  if (name === undefined) throw refuse('a part has no name');
  return { name, file: params.has('filename') || params.has('filename*') };
}

type State = 'preamble' | 'delimiter' | 'headers' | 'body' | 'epilogue';

/**
 * The streaming checker of one multipart body (see the top of this file). Feed it every byte in
 * order; it throws a 400 GatewayError at the first fault. It keeps nothing but a few bytes of
 * carry-over, a part's headers (bounded) and the model field's value (bounded).
 */
export class MultipartScanner {
  /** The value of the `model` field, once its part is complete. */
  model: string | null = null;
  /** Whether the model part began before any file part. */
  modelBeforeFile = false;
  /** Bytes of the body up to the end of the model part (its closing delimiter), once complete. */
  modelEnd = 0;
  /** A file part has begun. */
  fileSeen = false;
  /** The close delimiter was seen. */
  closed = false;
  private state: State = 'preamble';
  private readonly delimiter: Buffer;
  private carry: Buffer = Buffer.alloc(0);
  /** Bytes fed before `carry` begins. */
  private consumed = 0;
  private headers: Buffer = Buffer.alloc(0);
  /** The model part's value so far, while inside it. */
  private value: Buffer[] | null = null;
  private valueBytes = 0;
  private modelParts = 0;

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`--${boundary}`, 'latin1');
  }

  feed(chunk: Buffer): void {
    // Joining the carry-over to every chunk would copy the whole upload (slow for large chunks): when
    // no delimiter spans the junction, the carry-over is plain content and the chunk is scanned alone.
    if (this.carry.length > 0 && chunk.length > this.delimiter.length && this.state !== 'delimiter' && this.state !== 'headers') {
      const junction = Buffer.concat([this.carry, chunk.subarray(0, this.delimiter.length + 1)]);
      if (junction.indexOf(this.delimiter) === -1) {
        this.take(this.carry, 0, this.carry.length);
        this.consumed += this.carry.length;
        this.carry = Buffer.alloc(0);
      }
    }
    const buf = this.carry.length === 0 ? chunk : Buffer.concat([this.carry, chunk]);
    let pos = 0;
    for (;;) {
      if (this.state === 'delimiter') {
        if (buf.length - pos < 2) break;
        const after = buf.toString('latin1', pos, pos + 2);
        pos += 2;
        if (after === '--') {
          this.state = 'epilogue';
          this.closed = true;
        } else if (after === '\r\n') {
          this.state = 'headers';
          this.headers = Buffer.alloc(0);
        } else throw refuse('a boundary delimiter is followed by something other than CRLF or "--"');
        continue;
      }
      if (this.state === 'headers') {
        const end = this.headersEnd(buf, pos);
        if (end === -1) {
          pos = buf.length;
          break;
        }
        pos = end;
        continue;
      }
      // preamble, body, epilogue: look for the next delimiter.
      const at = buf.indexOf(this.delimiter, pos);
      if (at === -1) {
        // Keep what could be the start of a delimiter and the CRLF before it.
        const keep = Math.max(pos, buf.length - (this.delimiter.length + 1));
        this.take(buf, pos, keep);
        pos = keep;
        break;
      }
      this.atDelimiter(buf, pos, at);
      pos = at + this.delimiter.length;
      this.state = 'delimiter';
    }
    this.consumed += pos;
    this.carry = Buffer.from(buf.subarray(pos));
  }

  /** The body has ended: 400 unless it was complete. */
  end(): void {
    if (!this.closed) throw refuse('the body ended before its closing boundary');
  }

  /** Content bytes [from, to) of the current state. */
  private take(buf: Buffer, from: number, to: number): void {
    if (this.value === null || to <= from) return;
    this.valueBytes += to - from;
    if (this.valueBytes > MODEL_VALUE_MAX_BYTES) throw refuse(`the model field is longer than ${MODEL_VALUE_MAX_BYTES} bytes`);
    this.value.push(Buffer.from(buf.subarray(from, to)));
  }

  /** A delimiter at `at`: checks what precedes it and ends the current part. */
  private atDelimiter(buf: Buffer, pos: number, at: number): void {
    if (this.state === 'epilogue') throw refuse('the boundary appears after the closing boundary');
    const startOfBody = this.state === 'preamble' && this.consumed + at === 0;
    const crlf = at >= 2 && buf[at - 2] === 0x0d && buf[at - 1] === 0x0a && (this.state === 'preamble' || at - 2 >= pos);
    if (!startOfBody && !crlf) throw refuse('the boundary appears without CRLF before it (inside content, or after a bare LF)');
    if (this.state === 'body') {
      this.take(buf, pos, at - 2);
      if (this.value !== null) {
        this.model = Buffer.concat(this.value).toString('utf8');
        this.modelEnd = this.consumed + at;
        this.value = null;
      }
    }
  }

  /** Collects a part's headers; returns where its body begins in `buf`, or -1 when more is needed. */
  private headersEnd(buf: Buffer, pos: number): number {
    const before = this.headers.length;
    // The CRLF ending the delimiter line counts: an empty header block is CRLF CRLF right there.
    const block = Buffer.concat([CRLF, this.headers, buf.subarray(pos)]);
    const at = block.indexOf(HEADER_END);
    if (at === -1) {
      if (block.length - 2 > PART_HEADERS_MAX_BYTES) throw refuse(`a part's headers are larger than ${PART_HEADERS_MAX_BYTES} bytes`);
      this.headers = Buffer.from(block.subarray(2));
      return -1;
    }
    if (at > PART_HEADERS_MAX_BYTES) throw refuse(`a part's headers are larger than ${PART_HEADERS_MAX_BYTES} bytes`);
    this.begin(parsePartHeaders(block.toString('utf8', 2, Math.max(2, at))));
    this.headers = Buffer.alloc(0);
    this.state = 'body';
    // block = CRLF + earlier header bytes + buf[pos..]; the body starts after the blank line.
    return pos + (at + 4 - 2 - before);
  }

  private begin(part: Part): void {
    if (part.file) this.fileSeen = true;
    if (part.name.toLowerCase() !== 'model') return;
    if (++this.modelParts > 1) throw refuse('the body names the model more than once');
    if (part.file) throw refuse('the model part is a file; it must be a text field');
    this.modelBeforeFile = !this.fileSeen;
    this.value = [];
    this.valueBytes = 0;
  }
}

/** What the gateway knows of an upload before dispatch, and the body to send (the head, then the rest). */
export interface UploadHead {
  /** The `model` field, null when it was not found in the head (the body has none, or it comes after a file or past the bound). */
  model: string | null;
  stream: Readable;
}

/**
 * Reads the head of a multipart upload from `source` (the counted request body) until the model is
 * known, a file part begins, `maxHeadBytes` are buffered, or the body ends; resolves with the model and
 * a stream that sends the buffered head, then the rest, through the scanner (a later fault destroys
 * it with a 400). Rejects with the scanner's 400, the source's own error (413, 408), or `gone()` when
 * the client leaves first.
 */
export function readUploadHead(
  request: IncomingMessage,
  source: Readable,
  contentType: string,
  gone: () => Error,
  maxHeadBytes = MULTIPART_HEAD_MAX_BYTES,
): Promise<UploadHead> {
  const scanner = new MultipartScanner(boundaryOf(contentType));
  return new Promise((resolve, reject) => {
    const head: Buffer[] = [];
    let bytes = 0;
    let ended = false;
    // Only a model before the first file part and within the bound counts, however the bytes were
    // chunked: a chunk may carry the scanner past either before the head is decided.
    const inHead = () => scanner.model !== null && scanner.modelBeforeFile && scanner.modelEnd <= maxHeadBytes;
    const finish = (error: Error | null) => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      request.off('close', onClose);
      if (error) {
        // Nothing will read the rest: stop counting it (and its idle timer) without a second error.
        source.on('error', ignore);
        source.destroy();
        return reject(error);
      }
      source.pause();
      resolve({ model: inHead() ? scanner.model : null, stream: rest(source, scanner, Buffer.concat(head, bytes), ended) });
    };
    const onData = (chunk: Buffer) => {
      head.push(chunk);
      bytes += chunk.length;
      try {
        scanner.feed(chunk);
      } catch (error) {
        return finish(error as Error);
      }
      if (inHead() || scanner.fileSeen || scanner.closed || bytes >= maxHeadBytes) finish(null);
    };
    const onEnd = () => {
      ended = true;
      try {
        scanner.end();
      } catch (error) {
        return finish(error as Error);
      }
      finish(null);
    };
    const onError = (error: Error) => finish(error);
    const onClose = () => {
      if (!request.complete) finish(gone());
    };
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    request.on('close', onClose);
  });
}

function ignore(): void {}

/**
 * The head, then the rest of `source` through the scanner. A request refused after its head was read
 * (model, rate limit, budget) never reads this stream: an error it meets later (the upload's idle
 * timeout) must not go unhandled, hence the no-op listeners; a reader (undici) has its own.
 */
function rest(source: Readable, scanner: MultipartScanner, head: Buffer, ended: boolean): Readable {
  const out = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      try {
        scanner.feed(chunk);
      } catch (error) {
        return done(error as Error);
      }
      done(null, chunk);
    },
    flush(done) {
      try {
        scanner.end();
      } catch (error) {
        return done(error as Error);
      }
      done();
    },
  });
  out.on('error', ignore);
  if (head.length > 0) out.push(head);
  if (ended) {
    out.end();
    return out;
  }
  source.on('error', (error) => out.destroy(error));
  source.pipe(out);
  return out;
}
