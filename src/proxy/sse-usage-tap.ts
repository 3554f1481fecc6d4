import { StringDecoder } from 'node:string_decoder';
import type { UsageDialect } from '../protocols/usage';
import { ResponseObject, Usage, usageFrom } from './domain/usage';

const EVENT_END = /\r?\n\r?\n/;

/**
 * Watches an SSE response for the upstream's usage as it streams through.
 *
 * - `strip = false` (the client asked for usage itself): every chunk is forwarded unchanged, at once;
 *   a copy is parsed on the side.
 * - `strip = true` (the gateway injected `stream_options.include_usage`): complete events are
 *   forwarded as soon as they end; the usage-only chunk (`"choices":[]` with a usage object) is
 *   dropped and `"usage":null` is removed from the other chunks, so the client receives what it would
 *   have received had the gateway not asked.
 *
 * `dialect`: another API's stream (Anthropic's, Gemini's: src/protocols/usage.ts), read its way and
 * relayed unchanged.
 */
export class SseUsageTap {
  usage: Usage | null = null;
  /** The Responses object of the event that carried the usage (`response.completed`), when it names one. */
  object: ResponseObject = {};
  /** The stream's `data: [DONE]` (or its dialect's last event) has gone by: the client has the whole answer. */
  done = false;
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(
    private readonly strip: boolean,
    private readonly dialect: UsageDialect | null = null,
  ) {}

  /** Bytes to send to the client now (possibly empty). */
  push(chunk: Buffer): Buffer {
    this.pending += this.decoder.write(chunk);
    const parts = this.pending.split(EVENT_END);
    this.pending = parts.pop() ?? '';
    const done = this.dialect ? this.dialect.sseDone : /^data:\s*\[DONE\]\s*$/m;
    if (done) for (const event of parts) if (done.test(event)) this.done = true;
    if (!this.strip) {
      for (const event of parts) this.inspect(event);
      return chunk;
    }
    let out = '';
    for (const event of parts) {
      const keep = this.rewrite(event);
      if (keep !== null) out += `${keep}\n\n`;
    }
    return Buffer.from(out, 'utf8');
  }

  /** Whatever is left at the end of the stream. */
  end(): Buffer {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    if (!this.strip) {
      this.inspect(rest);
      return Buffer.alloc(0);
    }
    const keep = rest.trim() === '' ? rest : this.rewrite(rest);
    return Buffer.from(keep ?? '', 'utf8');
  }

  /** Records usage if the event carries it; returns the event's parsed data when it does. */
  private inspect(event: string): Record<string, unknown> | null {
    if (this.dialect ? !this.dialect.sseUsage.test(event) : !event.includes('"usage"') || !/"usage"\s*:\s*\{/.test(event)) return null;
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    try {
      const parsed = JSON.parse(data) as Record<string, unknown>;
      if (this.dialect) {
        this.usage = this.dialect.fromEvent(parsed, this.usage);
        return parsed;
      }
      this.usage = usageFrom(parsed) ?? this.usage;
      const response = parsed.response as Record<string, unknown> | undefined;
      if (typeof response === 'object' && response !== null) {
        const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
        this.object = { id: text(response.id), status: text(response.status), model: text(response.model) };
      }
      return parsed;
    } catch {
      return null;
    }
  }

  private rewrite(event: string): string | null {
    const parsed = this.inspect(event);
    if (parsed && Array.isArray(parsed.choices) && parsed.choices.length === 0) return null;
    return event.replace(/,"usage":null(?=[,}])/g, '').replace(/"usage":null,/g, '');
  }
}
