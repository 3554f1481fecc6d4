/**
 * The floor for any Node gateway: a pass-through proxy with undici and nothing else (no auth, no
 * parsing, no accounting). `node dist/bench/bare-proxy.js <upstream origin>` prints its port.
 */
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Dispatcher, Pool } from 'undici';

const pool = new Pool(process.argv[2], { connections: 256, keepAliveTimeout: 30_000 });

const server = createServer(async (req, res) => {
  try {
    const upstream = await pool.request({
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
      body: req,
    });
    res.writeHead(upstream.statusCode, upstream.headers as Record<string, string>);
    await pipeline(upstream.body, res);
  } catch {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  }
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
