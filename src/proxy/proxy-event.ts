import { Injectable } from '@nestjs/common';
import type { Settlement } from '../budgets/accounting.service';
import type { ProtocolName } from '../protocols/ingress';
import { Usage } from './domain/usage';

/** What happened to one proxied request; audit (and budgets) consume it. Never holds a secret. */
export interface ProxyEvent {
  requestId: string;
  /** The API the client spoke (src/protocols); absent: OpenAI's. */
  protocol?: ProtocolName;
  /** Null when the request was refused before a key was identified. */
  keyId: string | null;
  tenantId: string | null;
  method: string;
  path: string;
  model: string | null;
  /** The backend that answered (or was tried last), null when none was tried. */
  backend: string | null;
  /** HTTP status sent to the client (0 when the client went away before any). */
  status: number;
  usage: Usage | null;
  /** From the request's arrival to the end of the response (0.1 ms resolution). */
  latencyMs: number;
  /** From sending the request upstream (the attempt that answered) to the end of its body; null when
   * no upstream answered. `latencyMs - upstreamMs` is the gateway's own overhead. */
  upstreamMs: number | null;
  stream: boolean;
  /** The client disconnected before the response was complete. */
  aborted: boolean;
  /** Backends tried before the one that answered, with why they were passed over. */
  attempts: Array<{ backend: string; outcome: string }>;
  /** The gateway's error code when it answered with an error of its own (refusal, backend failure). */
  error: string | null;
  /** Budget scopes the request was charged to (empty when it was not governed or refused before). */
  scopes: string[];
  /** What the request was charged on the token and cost ledgers, once settled. */
  charged: Settlement | null;
  /** Response cache outcome (`x-ditto-cache`), null when the cache did not apply to the request. */
  cache: 'hit' | 'miss' | 'bypass' | null;
  /** AUDIT_LOG_BODIES only: the request body and the head of the response body. */
  bodies: { request: unknown; response: string } | null;
  /** A realtime session (`status` 101): its responses, who closed it and with which close code. */
  realtime?: { responses: number; closedBy: 'client' | 'upstream' | 'gateway'; closeCode: number };
}

export type ProxyEventListener = (event: ProxyEvent) => void;

/** In-process publish/subscribe of ProxyEvents, so features consume them without the proxy knowing. */
@Injectable()
export class ProxyEvents {
  private readonly listeners: ProxyEventListener[] = [];

  on(listener: ProxyEventListener): void {
    this.listeners.push(listener);
  }

  emit(event: ProxyEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}
