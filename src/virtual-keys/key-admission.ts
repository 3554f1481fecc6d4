import type { IncomingHttpHeaders } from 'node:http';
import { Injectable } from '@nestjs/common';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { VirtualKey } from './domain/virtual-key';
import { VirtualKeyIndex } from './virtual-key-index';

/** The WebSocket subprotocol prefix that carries a key (`openai-insecure-api-key.<key>`). */
export const KEY_PROTOCOL = 'openai-insecure-api-key.';

/** A key's model allow-list: exact names or `prefix*`; an empty list allows every model. */
export function modelAllowed(allowed: string[], model: string): boolean {
  return allowed.length === 0 || allowed.some((m) => (m.endsWith('*') ? model.startsWith(m.slice(0, -1)) : m === model));
}

/**
 * The proxy's first stage: which virtual key a request presents (from its headers alone, before any
 * body is read) and whether that key may use a model. No storage round trip: the index is in memory.
 */
@Injectable()
export class KeyAdmission {
  constructor(private readonly index: VirtualKeyIndex) {}

  /** The key of `Authorization: Bearer <key>` or `x-api-key`; 401 invalid_api_key, 403 key_disabled / key_expired. */
  admit(headers: IncomingHttpHeaders): VirtualKey {
    return this.index.authenticate(presentedKey(headers));
  }

  /** The key a client presented in its API's own way (src/protocols: `x-goog-api-key`, `?key=`, …); 401 / 403 as `admit`. */
  admitToken(token: string | undefined): VirtualKey {
    if (!token) throw new GatewayError(ErrorCode.InvalidApiKey, 'missing API key: send your virtual key as this API takes its key');
    return this.index.authenticate(token);
  }

  /**
   * The key of a WebSocket handshake: from the headers as `admit` (server-side clients), else from a
   * subprotocol `openai-insecure-api-key.<key>` (a browser's WebSocket cannot set headers: OpenAI's
   * own browser convention). 401 / 403 as `admit`.
   */
  admitWebSocket(headers: IncomingHttpHeaders, protocols: readonly string[]): VirtualKey {
    const carried = protocols.find((p) => p.startsWith(KEY_PROTOCOL));
    if (carried === undefined || headers.authorization !== undefined || headers['x-api-key'] !== undefined) return this.admit(headers);
    return this.index.authenticate(carried.slice(KEY_PROTOCOL.length));
  }

  /** 403 model_not_allowed unless the key's allow-list admits `model`. */
  checkModel(key: VirtualKey, model: string | null): void {
    if (model !== null && !modelAllowed(key.models, model)) {
      throw new GatewayError(ErrorCode.ModelNotAllowed, `this key may not use model '${model}'`, 'model');
    }
  }
}

function presentedKey(headers: IncomingHttpHeaders): string {
  const authorization = headers.authorization;
  const bearer = typeof authorization === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] : undefined;
  const apiKey = headers['x-api-key'];
  const token = bearer ?? (typeof apiKey === 'string' ? apiKey : undefined);
  if (!token) throw new GatewayError(ErrorCode.InvalidApiKey, 'missing API key: send Authorization: Bearer <virtual key>');
  return token;
}
