import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import WebSocket from 'ws';
import type { AccountingService, Charge, Settlement } from '../budgets/accounting.service';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import type { RateAdmission, RateLimitsService } from '../rate-limits/rate-limits.service';
import type { VirtualKey } from '../virtual-keys/domain/virtual-key';
import { Usage, usageFrom } from './domain/usage';
import { Exchange } from './exchange';
import type { ProxyEvent } from './proxy-event';

/** Past this many bytes queued towards one side, the other side is not read until they are sent. */
const HIGH_WATER_BYTES = 1024 * 1024;
/** At shutdown, how long sessions get to finish their closing handshakes before they are cut. */
const GO_AWAY_MS = 2000;

export type ClosedBy = 'client' | 'upstream' | 'gateway';

/** What a session needs from the gateway, and what it was admitted with. */
export interface SessionContext {
  key: VirtualKey;
  model: string;
  event: ProxyEvent;
  /** performance.now() when the handshake arrived. */
  started: number;
  /** The reservation held for the session's first response. */
  charge: Charge;
  rate: RateAdmission | null;
  accounting: AccountingService;
  rateLimits: RateLimitsService;
  emit: (event: ProxyEvent) => void;
  settings: { idleTimeoutMs: number; reserveTokens: number };
}

/**
 * One realtime session once both handshakes are done: messages relayed both ways as they come (text
 * and binary, never parsed but for the few that matter, never buffered beyond HIGH_WATER_BYTES), each
 * response's usage charged from the upstream's `response.done`, closed on both sides when either
 * closes, and one ProxyEvent when it has ended.
 *
 * Budgets: the session always holds a reservation of REALTIME_RESPONSE_RESERVE_TOKENS for its next
 * response (taken before the handshake; renewed before RESERVATION_TTL_SECS would let the reaper
 * release it). Each `response.done` settles the held reservation with the usage it reports and
 * reserves the next one; when the scopes cannot hold another, the client is sent an `error` event
 * (`budget_exceeded`) and the session is closed (1008). Whatever the upstream reports is charged, so
 * the budgets spent equal the usage the upstream reported; a response's usage beyond the reservation
 * is charged too (it may take a scope past its limit by at most that much). A session that ends while a
 * response is in progress (created, not done) is charged the reservation (the upstream may bill the
 * work); otherwise the reservation is released.
 */
export class RealtimeSession {
  private readonly logger = new Logger('RealtimeProxy');
  /** Accounting steps run one after another, in the order the events came. */
  private ledger: Promise<void> = Promise.resolve();
  private charge: Charge | null;
  private inProgress = 0;
  private responses = 0;
  private usage: Usage | null = null;
  private charged = { tokens: 0, usdMicros: 0, overshootTokens: 0, estimated: false, reserved: false };
  private closedBy: ClosedBy | null = null;
  private closeCode = 0;
  private lastMessage = Date.now();
  private readonly idleTimer: NodeJS.Timeout;
  private readonly renewTimer: NodeJS.Timeout;
  private open = 2;
  private readonly protocolErrors: { client?: number; upstream?: number } = {};
  private upstreamOpened = performance.now();
  private upstreamMs: number | null = null;
  readonly ended: Promise<void>;
  private resolveEnded!: () => void;

  constructor(
    private readonly client: WebSocket,
    private readonly upstream: WebSocket,
    private readonly context: SessionContext,
    renewEveryMs: number,
  ) {
    this.charge = context.charge;
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    this.relay(client, upstream, (data) => this.fromClient(data));
    this.relay(upstream, client, (data) => this.fromUpstream(data));
    client.on('close', (code, reason) => this.closed('client', code, reason));
    upstream.on('close', (code, reason) => {
      this.upstreamMs = Exchange.since(this.upstreamOpened);
      this.closed('upstream', code, reason);
    });
    // Errors (a reset, a message over REALTIME_MAX_MESSAGE_BYTES) are followed by 'close': handled there.
    client.on('error', (error) => this.failed('client', error));
    upstream.on('error', (error) => this.failed('upstream', error));
    const idle = context.settings.idleTimeoutMs;
    this.idleTimer = setInterval(() => {
      if (Date.now() - this.lastMessage >= idle) this.close(1001, 'idle timeout');
    }, Math.min(idle, 1000));
    this.idleTimer.unref();
    this.renewTimer = setInterval(() => this.step(() => this.renew()), renewEveryMs);
    this.renewTimer.unref();
    // Paused since its handshake (RealtimeProxy): its events flow from here on.
    upstream.resume();
  }

  /** Closes both sides from the gateway (idle, budget, shutdown). */
  close(code: number, reason: string): void {
    this.closedBy ??= 'gateway';
    if (this.closeCode === 0) this.closeCode = code;
    closeSide(this.client, code, reason);
    closeSide(this.upstream, code, reason);
  }

  /** At shutdown: 1001 to both sides; cut after GO_AWAY_MS if a closing handshake does not finish. */
  async goAway(): Promise<void> {
    this.close(1001, 'server shutting down');
    const cut = setTimeout(() => {
      this.client.terminate();
      this.upstream.terminate();
    }, GO_AWAY_MS);
    await this.ended;
    clearTimeout(cut);
  }

  /** Relays every message of `from` to `to`; `tap` sees text messages first and may hold one back. */
  private relay(from: WebSocket, to: WebSocket, tap: (data: Buffer) => boolean): void {
    let paused = false;
    const sent = () => {
      if (paused && to.bufferedAmount < HIGH_WATER_BYTES) {
        paused = false;
        from.resume();
      }
    };
    from.on('message', (data: Buffer, isBinary: boolean) => {
      this.lastMessage = Date.now();
      if (!isBinary && !tap(data)) return;
      if (to.readyState !== WebSocket.OPEN) return;
      to.send(data, { binary: isBinary }, sent);
      if (!paused && to.bufferedAmount >= HIGH_WATER_BYTES) {
        paused = true;
        from.pause();
      }
    });
  }

  /**
   * A client event, before it goes upstream: the session's model is the one it was admitted for, so a
   * `session.update` that names another is not forwarded (the client gets an `error` event).
   */
  private fromClient(data: Buffer): boolean {
    if (!data.includes('"session.update"')) return true;
    const event = parseEvent(data);
    const model = event?.type === 'session.update' && isObject(event.session) ? event.session.model : undefined;
    if (model === undefined || model === this.context.model) return true;
    this.sendError('invalid_request_error', ErrorCode.ModelNotAllowed, `this session is for model '${this.context.model}': open another session for another model`, 'session.model', event?.event_id);
    return false;
  }

  /** A server event, before it goes to the client: responses started and done, and their usage. */
  private fromUpstream(data: Buffer): boolean {
    if (!data.includes('"response.created"') && !data.includes('"response.done"')) return true;
    const event = parseEvent(data);
    if (event?.type === 'response.created') this.inProgress++;
    else if (event?.type === 'response.done') {
      this.inProgress = Math.max(0, this.inProgress - 1);
      this.responses++;
      const usage = usageFrom(event);
      if (usage) this.usage = addUsage(this.usage, usage);
      this.step(() => this.responseDone(usage));
    }
    return true;
  }

  /** Settles the held reservation with the response's usage, then holds the next one. */
  private async responseDone(usage: Usage | null): Promise<void> {
    const { accounting, key, model, settings } = this.context;
    const charge = this.charge;
    this.charge = null;
    if (charge === null) {
      // The budget ran out and the session is closing: what the upstream still reports is charged all the same.
      this.count(await accounting.chargeUnreserved(key, model, usage ?? estimateUsage(settings.reserveTokens)));
      return;
    }
    try {
      this.count(await accounting.settle(charge, usage, 'complete'));
    } catch (error) {
      // The reservation stays and the reaper releases it; the next reserve says whether the store is back.
      this.logger.error(`realtime ${this.context.event.requestId}: settling a response failed (the reaper will release its reservation): ${(error as Error).message}`);
    }
    if (this.closedBy !== null) return;
    try {
      this.charge = await accounting.admitFixed(key, model, settings.reserveTokens);
    } catch (error) {
      this.refuseNext(error);
    }
  }

  /** Takes a fresh reservation before the held one gets old enough for the reaper, then releases the old one. */
  private async renew(): Promise<void> {
    const held = this.charge;
    if (held === null || this.closedBy !== null) return;
    const { accounting, key, model, settings } = this.context;
    let next: Charge;
    try {
      next = await accounting.admitFixed(key, model, settings.reserveTokens);
    } catch (error) {
      // Someone else took the room meanwhile: keep the old reservation (settled as usual, late if reaped).
      this.logger.debug(`realtime ${this.context.event.requestId}: reservation not renewed: ${(error as Error).message}`);
      return;
    }
    this.charge = next;
    await accounting.settle(held, null, 'failed');
  }

  private refuseNext(error: unknown): void {
    const code = error instanceof GatewayError ? error.code : ErrorCode.InternalError;
    const message = error instanceof GatewayError ? error.message : 'internal error';
    this.context.event.error = code;
    if (code === ErrorCode.StorageUnavailable || code === ErrorCode.InternalError) {
      this.logger.error(`realtime ${this.context.event.requestId}: closing, the next response could not be reserved: ${message}`);
      this.sendError('api_error', code, `${message}; the session is closed`);
      this.close(1011, 'budget store unavailable');
      return;
    }
    this.sendError('insufficient_quota', code, `${message}; the session is closed`);
    this.close(1008, code);
  }

  /** An `error` server event of the gateway's own, in the shape of the Realtime API's. */
  private sendError(type: string, code: string, message: string, param: string | null = null, eventId: unknown = null): void {
    if (this.client.readyState !== WebSocket.OPEN) return;
    const clientEventId = typeof eventId === 'string' ? eventId : null;
    this.client.send(JSON.stringify({ type: 'error', event_id: `event_ditto_${randomUUID()}`, error: { type, code, message, param, event_id: clientEventId } }));
  }

  private count(settled: Settlement): void {
    this.charged.tokens += settled.tokens;
    this.charged.usdMicros += settled.usdMicros;
    this.charged.overshootTokens += settled.overshootTokens;
    if (settled.basis === 'estimate') this.charged.estimated = true;
    if (settled.basis !== 'released') this.charged.reserved = true;
  }

  /** Runs an accounting step after the previous ones; a failure is logged, never thrown. */
  private step(work: () => Promise<void>): void {
    this.ledger = this.ledger.then(work).catch((error: Error) => {
      // A settle that failed leaves its reservation to the reaper (RESERVATION_TTL_SECS).
      this.logger.error(`realtime ${this.context.event.requestId}: accounting failed: ${error.message}`);
    });
  }

  /**
   * A side broke the protocol (a message over REALTIME_MAX_MESSAGE_BYTES, invalid UTF-8, a bad frame):
   * ws closes it with the matching code but then reports 1006 (it stops reading the reply), so the code
   * is kept here to be relayed.
   */
  private failed(side: 'client' | 'upstream', error: Error & { code?: string }): void {
    this.logger.debug(`realtime ${this.context.event.requestId}: ${side}: ${error.message}`);
    const code = error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 1009 : error.code === 'WS_ERR_INVALID_UTF8' ? 1007 : error.code?.startsWith('WS_ERR_') ? 1002 : null;
    if (code !== null) this.protocolErrors[side] = code;
  }

  /** One side closed: the other is closed with the same code; once both are, the session ends. */
  private closed(side: 'client' | 'upstream', reported: number, reason: Buffer): void {
    const code = reported === 1006 ? (this.protocolErrors[side] ?? reported) : reported;
    if (this.closedBy === null) {
      this.closedBy = side;
      this.closeCode = code;
    }
    const other = side === 'client' ? this.upstream : this.client;
    if (code === 1005) closeSide(other);
    else if (relayable(code)) closeSide(other, code, reason.toString('utf8'));
    else closeSide(other, 1011, `${side} connection lost`);
    if (--this.open === 0) void this.end();
  }

  private async end(): Promise<void> {
    clearInterval(this.idleTimer);
    clearInterval(this.renewTimer);
    const { event, accounting, rateLimits, rate } = this.context;
    this.step(async () => {
      const charge = this.charge;
      this.charge = null;
      if (charge) this.count(await accounting.settle(charge, null, this.inProgress > 0 ? 'lost' : 'failed'));
    });
    await this.ledger;
    if (rate) rateLimits.finishRequest(rate, this.charged.tokens);
    event.status = 101;
    event.usage = this.usage;
    event.latencyMs = Exchange.since(this.context.started);
    event.upstreamMs = this.upstreamMs;
    event.charged = { tokens: this.charged.tokens, usdMicros: this.charged.usdMicros, overshootTokens: this.charged.overshootTokens, basis: !this.charged.reserved ? 'released' : this.charged.estimated ? 'estimate' : 'usage' };
    event.realtime = { responses: this.responses, closedBy: this.closedBy ?? 'gateway', closeCode: this.closeCode };
    this.context.emit(event);
    this.resolveEnded();
  }
}

/**
 * Close codes a peer may send (RFC 6455 §7.4.1: registered and application ranges). 1005 (none sent)
 * is relayed as a close without a code; 1006 (connection lost) and 1015 (TLS) are only ever reported
 * locally and become 1011.
 */
function relayable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

function closeSide(socket: WebSocket, code?: number, reason = ''): void {
  if (socket.readyState === WebSocket.CLOSED || socket.readyState === WebSocket.CLOSING) return;
  if (socket.readyState === WebSocket.CONNECTING) {
    socket.terminate();
    return;
  }
  if (code === undefined) socket.close();
  // A close reason is at most 123 bytes.
  else socket.close(code, Buffer.from(reason).subarray(0, 123).toString('utf8').replace(/\uFFFD$/, ''));
}

function parseEvent(data: Buffer): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(data.toString('utf8'));
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function addUsage(total: Usage | null, usage: Usage): Usage {
  if (total === null) return { ...usage };
  return {
    promptTokens: total.promptTokens + usage.promptTokens,
    completionTokens: total.completionTokens + usage.completionTokens,
    cachedTokens: total.cachedTokens + usage.cachedTokens,
    totalTokens: total.totalTokens + usage.totalTokens,
  };
}

/** A response without usage is charged what was reserved for it, as output tokens. */
function estimateUsage(tokens: number): Usage {
  return { promptTokens: 0, completionTokens: tokens, cachedTokens: 0, totalTokens: tokens };
}
