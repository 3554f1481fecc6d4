/**
 * A small local load balancer for trying replicas without Docker (docs/deployment.md): round robin
 * over the replicas whose `GET /ready` answers 200 (checked every `healthEveryMs`), so a draining
 * replica stops getting new requests; a request whose connection to a replica fails before any answer
 * (refused, reset while idle) is sent to the next one. Streams are relayed as they arrive.
 *
 *   node dist/bench/round-robin-lb.js <port> http://127.0.0.1:8081 http://127.0.0.1:8082
 */
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Dispatcher, Pool } from 'undici';

/** Errors that mean the replica never saw the request: safe to send it to another one. */
const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'EPIPE']);
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host']);

export interface Balancer {
  url: string;
  /** Replicas currently in rotation. */
  healthy(): string[];
  close(): Promise<void>;
}

export async function startBalancer(replicas: string[], port = 0, healthEveryMs = 100): Promise<Balancer> {
  const pools = new Map(replicas.map((r) => [r, new Pool(r, { connections: 128, keepAliveTimeout: 10_000 })]));
  const inRotation = new Set<string>();
  let next = 0;

  const check = async (replica: string) => {
    try {
      const response = await pools.get(replica)!.request({ path: '/ready', method: 'GET', headersTimeout: healthEveryMs * 5 });
      await response.body.dump();
      if (response.statusCode === 200) inRotation.add(replica);
      else inRotation.delete(replica);
    } catch {
      inRotation.delete(replica);
    }
  };
  await Promise.all(replicas.map(check));
  const timer = setInterval(() => void Promise.all(replicas.map(check)), healthEveryMs);

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    for (let attempt = 0; attempt < replicas.length + 1; attempt++) {
      const candidates = [...inRotation];
      const replica = candidates.length > 0 ? candidates[next++ % candidates.length] : replicas[next++ % replicas.length];
      let upstream: Dispatcher.ResponseData;
      try {
        upstream = await pools.get(replica)!.request({
          path: req.url ?? '/',
          method: req.method as Dispatcher.HttpMethod,
          headers,
          body: body.length > 0 ? body : null,
        });
      } catch (error) {
        if (RETRYABLE.has((error as { code?: string }).code ?? '')) {
          inRotation.delete(replica);
          continue;
        }
        throw error;
      }
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(upstream.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
      res.writeHead(upstream.statusCode, out);
      await pipeline(upstream.body, res);
      return;
    }
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'no replica could take the request', type: 'api_error', code: 'backend_error', param: null } }));
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    healthy: () => [...inRotation],
    close: async () => {
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...pools.values()].map((p) => p.close()));
    },
  };
}

if (require.main === module) {
  const [port, ...replicas] = process.argv.slice(2);
  if (!port || replicas.length === 0) {
    process.stderr.write('usage: node dist/bench/round-robin-lb.js <port> <replica url> [<replica url> …]\n');
    process.exit(2);
  }
  void startBalancer(replicas, Number(port)).then((lb) => process.stdout.write(`balancing ${replicas.join(', ')} on ${lb.url}\n`));
}
