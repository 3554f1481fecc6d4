import { AddressInfo, Server, Socket, connect, createServer } from 'node:net';

/**
 * A TCP relay in front of a MongoDB-protocol server that lets one command through at a time, across
 * all client connections: a command is sent upstream only after the previous one has been answered.
 *
 * Why: the Mongoose backend relies on MongoDB applying each single-document update atomically (a
 * guarded `$inc`, a `findOneAndDelete`), which MongoDB guarantees. FerretDB 1.24 does not: it reads the
 * document, applies the update in its own process and writes the document back, with nothing stopping
 * another connection in between (200 concurrent `$inc` of one document leave it at 1, see the
 * mongodb contract spec). Run one command at a time, FerretDB gives the same per-document atomicity,
 * so the concurrency tests exercise the backend's own logic (guards, compensation, exactly-once
 * settling) across interleaved commands from several connections and processes. It is stricter than
 * MongoDB only in that a multi-document command (a bulk write) also runs alone; the backend does not
 * rely on that. Used only in front of FerretDB, never in front of a real MongoDB.
 *
 * Wire protocol (MongoDB docs, "MongoDB Wire Protocol"): every message starts with a 16-byte header
 * `messageLength, requestID, responseTo, opCode` (int32 little-endian). OP_MSG (2013) has a uint32
 * `flagBits` after the header: bit 1 `moreToCome` means the sender expects no reply to it (from a
 * client) or that more replies follow (from the server). Anything else the drivers send (OP_QUERY for
 * the first handshake, OP_COMPRESSED, which is never negotiated here) is answered by one reply.
 */
export interface SerialRelay {
  /** `mongodb://127.0.0.1:<port>/` */
  uri: string;
  port: number;
  close(): Promise<void>;
}

const HEADER = 16;
const OP_MSG = 2013;
const MORE_TO_COME = 1 << 1;

/** Splits a byte stream into whole wire-protocol messages. */
class MessageReader {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const messages: Buffer[] = [];
    while (this.buffered.length >= 4) {
      const length = this.buffered.readInt32LE(0);
      if (length < HEADER || this.buffered.length < length) break;
      messages.push(this.buffered.subarray(0, length));
      this.buffered = this.buffered.subarray(length);
    }
    return messages;
  }
}

function moreToCome(message: Buffer): boolean {
  return message.readInt32LE(12) === OP_MSG && message.length >= HEADER + 4 && (message.readUInt32LE(HEADER) & MORE_TO_COME) !== 0;
}

interface Pending {
  upstream: Socket;
  message: Buffer;
}

export async function startSerialRelay(target: { host: string; port: number }): Promise<SerialRelay> {
  const queue: Pending[] = [];
  /** The connection whose command is upstream now, and the function that ends its turn. */
  let turn: { upstream: Socket; done: () => void } | null = null;
  const sockets = new Set<Socket>();

  const next = () => {
    if (turn !== null) return;
    const pending = queue.shift();
    if (!pending) return;
    if (pending.upstream.destroyed) return next();
    pending.upstream.write(pending.message);
    // A command that expects no reply (an unacknowledged write) ends its turn once written.
    if (moreToCome(pending.message)) return next();
    turn = {
      upstream: pending.upstream,
      done: () => {
        turn = null;
        next();
      },
    };
  };

  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    const fromClient = new MessageReader();
    const fromServer = new MessageReader();
    client.on('data', (chunk) => {
      for (const message of fromClient.push(chunk)) queue.push({ upstream, message });
      next();
    });
    upstream.on('data', (chunk) => {
      for (const message of fromServer.push(chunk)) {
        client.write(message);
        if (turn?.upstream === upstream && !moreToCome(message)) turn.done();
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      // A connection that died while its command was upstream must not hold everyone else up.
      if (turn?.upstream === upstream) turn.done();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
