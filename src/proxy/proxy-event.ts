import { Injectable } from '@nestjs/common';
import { Usage } from './usage';

/** What happened to one proxied request; audit (and budgets) consume it. Never holds a secret. */
export interface ProxyEvent {
  requestId: string;
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
  latencyMs: number;
  stream: boolean;
  /** The client disconnected before the response was complete. */
  aborted: boolean;
  /** Backends tried before the one that answered, with why they were passed over. */
  attempts: Array<{ backend: string; outcome: string }>;
  /** The gateway's error code when it answered with an error of its own (refusal, backend failure). */
  error: string | null;
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
