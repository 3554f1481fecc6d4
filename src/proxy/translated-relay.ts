import { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { writeJson } from '../common/errors/gateway-exception.filter';
import { isJsonObject } from '../protocols/ingress';
import type { AnswerTranslator } from '../protocols/translate/translation';
import { usageDialect } from '../protocols/usage';
import { usageFrom } from './domain/usage';
import { Exchange, drained } from './exchange';
import { decoderFor } from './relay';
import { SseUsageTap } from './sse-usage-tap';
import { UpstreamAnswer, describeFailure } from './upstream-dispatch';

/** A translated JSON answer is read whole (it is rewritten as a whole): at most this much. */
export const TRANSLATED_ANSWER_MAX_BYTES = 32 * 1024 * 1024;

const EVENT_END = /\r?\n\r?\n/;

/**
 * The relay stage for an answer of a backend speaking another API than the client
 * (src/protocols/translate): a stream is rewritten event by event as it arrives, a JSON answer (or an
 * error) read whole and rewritten; the usage is read from the backend's own bytes, in its API's way.
 */
export async function relayTranslated(exchange: Exchange, { response, backend }: UpstreamAnswer, translator: AnswerTranslator): Promise<void> {
  const { event, abort } = exchange;
  const raw = exchange.response;
  const ok = response.statusCode >= 200 && response.statusCode < 300;
  const sse = String(response.headers['content-type'] ?? '').includes('text/event-stream');
  const coding = String(response.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  const decoder = coding === 'identity' || coding === '' ? null : decoderFor(coding);
  if (coding !== 'identity' && coding !== '' && decoder === null) {
    exchange.lost = true;
    await response.body.dump().catch(() => undefined);
    throw new GatewayError(ErrorCode.BackendError, `the backend answered in a content coding the gateway cannot read (${coding.slice(0, 32)})`);
  }
  const body: Readable = decoder ? (response.body as Readable).pipe(decoder) : (response.body as Readable);
  const headers = { ...exchange.headers, 'x-ditto-backend': backend.name };
  const dialect = usageDialect(backend.type);
  try {
    if (ok && sse) {
      event.status = response.statusCode;
      raw.writeHead(response.statusCode, { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      raw.flushHeaders();
      const tap = new SseUsageTap(false, dialect);
      const text = new StringDecoder('utf8');
      let pending = '';
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          tap.push(chunk);
          pending += text.write(chunk);
          const events = pending.split(EVENT_END);
          pending = events.pop() ?? '';
          const out = events.map((e) => translator.event(e)).join('');
          if (translator.done) exchange.relayed = true;
          if (out !== '' && !raw.write(out)) await drained(raw, abort);
        }
        tap.end();
        const rest = (pending.trim() === '' ? '' : translator.event(pending)) + translator.end();
        exchange.relayed = true;
        raw.end(rest);
      } finally {
        event.usage = tap.usage;
      }
      return;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > TRANSLATED_ANSWER_MAX_BYTES) {
        exchange.lost = ok;
        throw new GatewayError(ErrorCode.BackendError, `the backend's answer is larger than the ${TRANSLATED_ANSWER_MAX_BYTES} bytes a translated answer may be`);
      }
      chunks.push(chunk);
    }
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      parsed = null;
    }
    if (ok && !isJsonObject(parsed)) {
      exchange.lost = true;
      throw new GatewayError(ErrorCode.BackendError, 'the backend answered 2xx with a body that is not a JSON object');
    }
    event.status = response.statusCode;
    if (ok) event.usage = dialect ? dialect.fromJson(new Map(Object.entries(parsed as object))) : usageFrom(parsed);
    const out = ok ? translator.json(parsed as Record<string, unknown>) : translator.error(response.statusCode, parsed);
    exchange.relayed = true;
    writeJson(raw, response.statusCode, headers, out);
  } catch (error) {
    if (error instanceof GatewayError && !raw.headersSent) throw error;
    // Client gone, or the backend failed mid-body: the status is already sent, so cut the response.
    if (!abort.aborted) event.error = `upstream ${describeFailure(error)} mid-response`;
    exchange.lost = true;
    raw.destroy();
  } finally {
    event.upstreamMs = Exchange.since(exchange.upstreamStarted);
  }
}
