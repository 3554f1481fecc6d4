/**
 * Time to the first SSE event of a streamed chat completion, one request after another on one
 * keep-alive connection, with a raw `net` socket (no HTTP client library between the socket and the
 * clock). Run by `npm run bench` in its own process, apart from the orchestrator:
 * `node dist/bench/ttfb-client.js <url> <requests> <warm-up requests>`, body in BENCH_BODY, optional
 * authorization header in BENCH_AUTHORIZATION. Prints `{"samples_us":[…]}`: for each measured request,
 * the microseconds from writing it to receiving the bytes that hold its first `data:` event. Exits 1 on
 * a status other than 200 or a response without an event.
 */
import { Socket, connect } from 'node:net';

const [url, requests, warmUp] = [new URL(process.argv[2]), Number(process.argv[3]), Number(process.argv[4] ?? 0)];
const body = Buffer.from(process.env.BENCH_BODY ?? '');
const authorization = process.env.BENCH_AUTHORIZATION ? `authorization: ${process.env.BENCH_AUTHORIZATION}\r\n` : '';
const request = Buffer.concat([
  Buffer.from(
    `POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\n${authorization}content-type: application/json\r\naccept: text/event-stream\r\ncontent-length: ${body.length}\r\n\r\n`,
  ),
  body,
]);

/** Bytes as they arrive, each chunk with its arrival time. */
class Reader {
  private buffered: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closed: Error | null = null;
  lastArrival = 0n;

  constructor(socket: Socket) {
    socket.on('data', (data: Buffer) => {
      this.lastArrival = process.hrtime.bigint();
      this.buffered = this.buffered.length ? Buffer.concat([this.buffered, data]) : data;
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = new Error('the connection closed mid-response');
      this.wake?.();
    });
    socket.on('error', (error) => {
      this.closed = error;
      this.wake?.();
    });
  }

  get bytes(): Buffer {
    return this.buffered;
  }

  /** Drops the first `n` bytes (those of a finished response). */
  consume(n: number): void {
    this.buffered = this.buffered.subarray(n);
  }

  async more(): Promise<void> {
    if (this.closed) throw this.closed;
    await new Promise<void>((resolve) => (this.wake = resolve));
    this.wake = null;
    if (this.closed) throw this.closed;
  }
}

/** The length of a complete chunked body at the start of `bytes`, or null while it is incomplete. */
function chunkedLength(bytes: Buffer): number | null {
  let at = 0;
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = parseInt(bytes.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isInteger(size)) throw new Error('malformed chunked body');
    // The last chunk carries no trailers here: `0\r\n\r\n`.
    const end = lineEnd + 2 + size + 2;
    if (bytes.length < end) return null;
    if (size === 0) return end;
    at = end;
  }
}

/** One request: microseconds to its first event; returns once the whole response has been read. */
async function measure(socket: Socket, reader: Reader): Promise<number> {
  const start = process.hrtime.bigint();
  socket.write(request);
  let headEnd = -1;
  while ((headEnd = reader.bytes.indexOf('\r\n\r\n')) < 0) await reader.more();
  const head = reader.bytes.subarray(0, headEnd).toString('latin1');
  if (!/^HTTP\/1\.1 200 /.test(head)) throw new Error(`answered ${head.split('\r\n')[0]}: ${reader.bytes.subarray(headEnd + 4).toString('utf8').slice(0, 300)}`);
  const chunked = /^transfer-encoding:\s*chunked\s*$/im.test(head);
  const length = Number(/^content-length:\s*(\d+)\s*$/im.exec(head)?.[1] ?? NaN);
  if (!chunked && !Number.isInteger(length)) throw new Error('a response without a length on a keep-alive connection');
  const bodyStart = headEnd + 4;
  let firstEvent: bigint | null = null;
  for (;;) {
    if (firstEvent === null && reader.bytes.indexOf('data:', bodyStart) >= 0) firstEvent = reader.lastArrival - start;
    const body = reader.bytes.subarray(bodyStart);
    const bodyLength = chunked ? chunkedLength(body) : body.length >= length ? length : null;
    if (bodyLength !== null) {
      if (firstEvent === null) throw new Error(`a response without an SSE event: ${body.toString('utf8').slice(0, 300)}`);
      reader.consume(bodyStart + bodyLength);
      return Number(firstEvent / 1000n);
    }
    await reader.more();
  }
}

async function main(): Promise<void> {
  const socket = connect(Number(url.port), url.hostname);
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const reader = new Reader(socket);
  for (let i = 0; i < warmUp; i++) await measure(socket, reader);
  const samples: number[] = [];
  for (let i = 0; i < requests; i++) samples.push(await measure(socket, reader));
  socket.end();
  process.stdout.write(`${JSON.stringify({ samples_us: samples })}\n`);
}

void main().catch((error: Error) => {
  process.stderr.write(`ttfb-client: ${error.message}\n`);
  process.exit(1);
});
