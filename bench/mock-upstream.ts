/**
 * A mock OpenAI-compatible upstream for tests and the benchmark. It answers like OpenAI does:
 * chat/completions (JSON and SSE, `stream_options.include_usage` with `"usage":null` on ordinary
 * chunks and a final usage chunk), completions, embeddings, responses, models; any other path is
 * echoed. Output length honours `max_tokens`/`max_completion_tokens`/`max_output_tokens` (default 16),
 * so usage is realistic for budget tests. Every request is recorded for assertions.
 */
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo, Socket } from 'node:net';
import { createBrotliCompress, createDeflate, createGzip } from 'node:zlib';
import { estimatePromptTokens } from '../src/budgets/token-estimate';

export interface MockRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: any;
  /** The body's bytes as text, exactly as received. */
  raw: string;
  /** Whether the connection that carried the request has closed since. */
  connectionClosed(): boolean;
}

export interface MockOptions {
  /** Answer every request with this status (an OpenAI error body). */
  failStatus?: number;
  /** Wait this long before answering (headers). */
  delayMs?: number;
  /** Delay between SSE chunks. */
  chunkDelayMs?: number;
  /** Accept connections but never answer. */
  hang?: boolean;
  /** Include cached prompt tokens in usage (prompt_tokens_details.cached_tokens). */
  cachedTokens?: number;
  /** Compress answers (JSON and SSE) with gzip when the request accepts it, like OpenAI's API does. */
  compress?: boolean;
  /** Label every answer with this content coding whatever the request accepts (an upstream that compresses
   * anyway); `zstd` sends the bytes as they are under that label (a coding the gateway cannot decode). */
  forceEncoding?: 'gzip' | 'br' | 'deflate' | 'zstd';
  /** Extra headers on every answer (e.g. the upstream's own x-request-id and x-ratelimit-*). */
  responseHeaders?: Record<string, string>;
  /** Natural length of a reply: a request's max_tokens caps it, like a real model that stops on its
   * own. Unset: every reply is exactly max_tokens long (16 without one). */
  replyTokens?: number;
  /** Fields written over the usage the mock reports (a broken or hostile upstream). */
  usage?: Record<string, unknown>;
  /** Set to false to keep no record of requests (the benchmark's millions of them would fill the heap). */
  recordRequests?: boolean;
}

export interface MockUpstream {
  url: string;
  /** The HTTP server (tests attach more to it, e.g. the realtime WebSocket mock of test/fixtures). */
  server: Server;
  requests: MockRequest[];
  options: MockOptions;
  /** Sockets closed by the client side since start, with the time they closed. */
  closedSockets: number[];
  close(): Promise<void>;
}

/** Prompt tokens as OpenAI reports them: the model's tokenizer and chat-format overhead (at least 1). */
export function mockPromptTokens(path: string, body: any): number {
  const object = typeof body === 'object' && body !== null ? body : { input: String(body ?? '') };
  return Math.max(1, estimatePromptTokens(path.replace(/^\/v1/, ''), object));
}

function outputTokens(body: any, options: MockOptions): number {
  const requested: number | undefined = body?.max_tokens ?? body?.max_completion_tokens ?? body?.max_output_tokens;
  if (options.replyTokens === undefined) return requested ?? 16;
  return Math.min(requested ?? Infinity, options.replyTokens);
}

const WORDS = ['Hello', ' from', ' the', ' mock', ' upstream', '.'];

export async function startMockUpstream(options: MockOptions = {}): Promise<MockUpstream> {
  const requests: MockRequest[] = [];
  const closedSockets: number[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: any = raw;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        /* not JSON: keep the text */
      }
      const socket = req.socket;
      if (mock.options.recordRequests !== false) requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, raw, connectionClosed: () => socket.destroyed });
      if (mock.options.hang) return;
      const answer = () => respond(req, encodedAnswer(req, res, mock.options), body, mock.options);
      if (mock.options.delayMs) setTimeout(answer, mock.options.delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      closedSockets.push(Date.now());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const mock: MockUpstream = {
    url: `http://127.0.0.1:${port}/v1`,
    server,
    requests,
    options,
    closedSockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return mock;
}

/** `res`, or a stand-in that compresses what is written to it (each write flushed, so SSE stays live). */
function encodedAnswer(req: IncomingMessage, res: ServerResponse, options: MockOptions): ServerResponse {
  const accepts = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const coding = options.forceEncoding ?? (options.compress && accepts ? 'gzip' : null);
  if (coding === null) return res;
  const encoder = coding === 'gzip' ? createGzip() : coding === 'br' ? createBrotliCompress() : coding === 'deflate' ? createDeflate() : null;
  encoder?.pipe(res);
  return new Proxy(res, {
    get(target, prop) {
      if (prop === 'writeHead') {
        return (status: number, headers: Record<string, string | number>) => {
          const { 'content-length': _length, ...rest } = headers;
          target.writeHead(status, { ...rest, 'content-encoding': coding });
        };
      }
      if (prop === 'write') {
        return (chunk: string | Buffer) => {
          if (!encoder) return target.write(chunk);
          encoder.write(chunk);
          encoder.flush();
          return true;
        };
      }
      if (prop === 'end') {
        return (chunk?: string | Buffer) => {
          if (!encoder) return target.end(chunk);
          if (chunk) encoder.write(chunk);
          encoder.end();
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function respond(req: IncomingMessage, res: ServerResponse, body: any, options: MockOptions): void {
  for (const [name, value] of Object.entries(options.responseHeaders ?? {})) res.setHeader(name, value);
  if (options.failStatus) {
    json(res, options.failStatus, { error: { message: `mock failure ${options.failStatus}`, type: 'server_error', code: null, param: null } });
    return;
  }
  const path = (req.url ?? '').split('?')[0];
  const created = 1_700_000_000;
  if (req.method === 'GET' && path === '/v1/models') {
    json(res, 200, {
      object: 'list',
      data: ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small', 'claude-3-haiku'].map((id) => ({ id, object: 'model', created, owned_by: 'mock' })),
    });
    return;
  }
  const model = body?.model ?? 'unknown';
  const prompt = mockPromptTokens(path, body);
  // `n` choices, each as long as one reply would be: usage counts them all, as OpenAI's does.
  const choices = Number.isSafeInteger(body?.n) && body.n > 1 ? (body.n as number) : 1;
  const perChoice = outputTokens(body, options);
  const completion = perChoice * choices;
  const cached = Math.min(options.cachedTokens ?? 0, prompt);
  const usage = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    ...(cached ? { prompt_tokens_details: { cached_tokens: cached } } : {}),
    ...options.usage,
  };
  const text = Array.from({ length: perChoice }, (_, i) => WORDS[i % WORDS.length]);
  if (req.method === 'POST' && path === '/v1/chat/completions') {
    if (body?.stream) return streamChat(res, model, text, usage, body?.stream_options?.include_usage === true, options);
    json(res, 200, {
      id: 'chatcmpl-mock',
      object: 'chat.completion',
      created,
      model,
      choices: Array.from({ length: choices }, (_, index) => ({ index, message: { role: 'assistant', content: text.join('') }, finish_reason: 'length' })),
      usage,
    });
    return;
  }
  if (req.method === 'POST' && path === '/v1/completions') {
    json(res, 200, { id: 'cmpl-mock', object: 'text_completion', created, model, choices: [{ index: 0, text: text.join(''), finish_reason: 'length' }], usage });
    return;
  }
  if (req.method === 'POST' && path === '/v1/embeddings') {
    const inputs = Array.isArray(body?.input) ? body.input : [body?.input];
    json(res, 200, {
      object: 'list',
      model,
      data: inputs.map((_: unknown, index: number) => ({ object: 'embedding', index, embedding: [0.1, 0.2, 0.3] })),
      usage: { prompt_tokens: prompt, total_tokens: prompt },
    });
    return;
  }
  if (req.method === 'POST' && path === '/v1/responses') {
    json(res, 200, {
      id: 'resp-mock',
      object: 'response',
      created_at: created,
      model,
      status: 'completed',
      output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: text.join('') }] }],
      usage: { input_tokens: prompt, output_tokens: completion, total_tokens: prompt + completion },
    });
    return;
  }
  json(res, 200, { echo: { method: req.method, path, query: (req.url ?? '').split('?')[1] ?? null } });
}

function streamChat(res: ServerResponse, model: string, words: string[], usage: object, includeUsage: boolean, options: MockOptions): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const base = { id: 'chatcmpl-mock', object: 'chat.completion.chunk', created: 1_700_000_000, model };
  const extra = includeUsage ? { usage: null } : {};
  const events: string[] = [
    JSON.stringify({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], ...extra }),
    ...words.map((w) => JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: w }, finish_reason: null }], ...extra })),
    JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'length' }], ...extra }),
  ];
  if (includeUsage) events.push(JSON.stringify({ ...base, choices: [], usage }));
  events.push('[DONE]');
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i === events.length) {
      res.end();
      return;
    }
    res.write(`data: ${events[i++]}\n\n`);
    if (options.chunkDelayMs) setTimeout(next, options.chunkDelayMs);
    else setImmediate(next);
  };
  next();
}
