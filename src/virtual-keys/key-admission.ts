import type { IncomingHttpHeaders } from 'node:http';
import { Injectable } from '@nestjs/common';
import { ErrorCode, GatewayError } from '../common/errors/gateway-error';
import { scopesOf } from '../ledger/domain/scopes';
import { LimitIndex } from '../budgets/limit-index';
import { routeAllowed } from './domain/route-glob';
import { VirtualKey } from './domain/virtual-key';
import { VirtualKeyIndex } from './virtual-key-index';

/** The WebSocket subprotocol prefix that carries a key (`openai-insecure-api-key.<key>`). */
export const KEY_PROTOCOL = 'openai-insecure-api-key.';

/** A key's model allow-list: exact names or `prefix*`; an empty list allows every model. */
export function modelAllowed(allowed: string[], model: string): boolean {
  return allowed.length === 0 || allowed.some((m) => (m.endsWith('*') ? model.startsWith(m.slice(0, -1)) : m === model));
}

/** Paths whose requests name the model they run (JSON `model`, or the upload's `model` field). */
const MODEL_PATHS = new Set([
  '/chat/completions', '/completions', '/embeddings', '/moderations', '/responses', '/responses/input_tokens',
  '/images/generations', '/images/edits', '/images/variations', '/audio/speech', '/audio/transcriptions', '/audio/translations', '/videos',
]);

/**
 * Whether a request creates a batch, however an upstream might spell the route: servers that match
 * paths case-insensitively, ignore a trailing `/` or strip `;` parameters must not turn
 * `/v1/Batches/` into a batch the check did not see (fail closed). `path` is after `/v1`, no query.
 */
export function createsBatch(method: string, path: string): boolean {
  // The first test keeps the hot path (every other request) free of string work.
  if (method !== 'POST' || (path.charCodeAt(1) | 0x20) !== 0x62) return false;
  return lenient(path) === '/batches';
}

/** The routes that mint an ephemeral credential for a realtime session (OpenAI's Realtime API). */
const EPHEMERAL_KEY_PATHS = new Set(['/realtime/client_secrets', '/realtime/sessions', '/realtime/transcription_sessions']);

/**
 * Whether a request mints an ephemeral realtime credential: a browser or phone then talks to the
 * provider with it directly, never through the gateway. Spelled as leniently as `createsBatch`.
 */
export function createsEphemeralKey(method: string, path: string): boolean {
  if (method !== 'POST' || (path.charCodeAt(1) | 0x20) !== 0x72) return false;
  return EPHEMERAL_KEY_PATHS.has(lenient(path));
}

/** A path as the most lenient upstream might read it: lower case, without `;` parameters or a trailing `/`. */
function lenient(path: string): string {
  return path.toLowerCase().replace(/;[^/]*/g, '').replace(/\/+$/, '');
}

/**
 * The model id a `/v1/models/{id}` path names (decoded; an id may hold `/`, as in
 * `meta-llama/Llama-3.1-8B`), or null for another path. The prefix is matched case-insensitively
 * like `createsBatch`.
 */
export function modelIdInPath(path: string): string | null {
  if (!path.toLowerCase().startsWith('/models/')) return null;
  try {
    return decodeURIComponent(path.slice('/models/'.length));
  } catch {
    return path.slice('/models/'.length);
  }
}

/**
 * The proxy's first stage: which virtual key a request presents (from its headers alone, before any
 * body is read) and what that key may do: its routes (`allowed_routes`), the model a path names, batch
 * creation, and the model a body names. No storage round trip, but for batch creation (which reads the
 * ledgers for budgets on the key's scopes): the index is in memory.
 */
@Injectable()
export class KeyAdmission {
  constructor(
    private readonly index: VirtualKeyIndex,
    private readonly limits: LimitIndex,
  ) {}

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

  /**
   * What the request line alone decides, before the body is read: 403 route_not_allowed (the key's
   * `allowed_routes`), 404 model_not_found for a `/v1/models/{id}` the key's allow-list does not
   * admit (OpenAI's answer for a model you cannot see; never forwarded), 403 batch_not_allowed (see
   * `checkBatch`). `path` is the canonical path after `/v1`, without the query. From memory: no
   * store read.
   */
  checkRequest(key: VirtualKey, method: string, path: string): void {
    this.checkRoute(key, method, `/v1${path}`);
    const id = key.models.length > 0 ? modelIdInPath(path) : null;
    if (id !== null && !modelAllowed(key.models, id)) {
      throw new GatewayError(ErrorCode.ModelNotFound, `The model '${id}' does not exist or you do not have access to it.`, 'model');
    }
    if (createsBatch(method, path)) this.checkBatch(key);
    else if (createsEphemeralKey(method, path)) this.checkEphemeralKey(key, path);
  }

  /**
   * 403 route_not_allowed unless the key's `allowed_routes` admit the route, its full canonical path
   * (`/v1/…`, or `/v1beta/…` for Gemini's API); empty: every route.
   */
  checkRoute(key: VirtualKey, method: string, route: string): void {
    if (!routeAllowed(key.allowedRoutes, route)) {
      throw new GatewayError(ErrorCode.RouteNotAllowed, `this key may not call ${method} ${route} (its allowed_routes do not include it)`);
    }
  }

  /**
   * Batch creation for a key with a model allow-list or a budget (its own, or a limit on any of its
   * scopes, tokens or USD) is refused, unless its `allowed_routes` name batches explicitly (a pattern
   * matching `/v1/batches`; the default, no patterns, does not count): the gateway cannot reserve a
   * batch's usage up front (the upstream runs it later, from an input file), nor check the models its
   * input file names.
   */
  private checkBatch(key: VirtualKey): void {
    const reason = this.governedBy(key, '/v1/batches', 'the models named in a batch input file are not checked', 'budget reservations do not cover batches');
    if (reason === null) return;
    throw new GatewayError(
      ErrorCode.BatchNotAllowed,
      `this key may not create batches: it has ${reason}, and a batch's usage cannot be reserved up front. ` +
        'To allow it anyway, add a pattern matching /v1/batches to the key\'s allowed_routes.',
    );
  }

  /**
   * Minting an ephemeral realtime credential, for a key with a model allow-list or a budget, is refused
   * the same way (unless its `allowed_routes` name the route explicitly): the session it opens talks to
   * the provider directly, so neither the allow-list nor the budget would see it.
   */
  private checkEphemeralKey(key: VirtualKey, path: string): void {
    const reason = this.governedBy(key, `/v1${path}`, 'the session picks its model at the provider', 'the session is billed at the provider');
    if (reason === null) return;
    throw new GatewayError(
      ErrorCode.EphemeralKeyNotAllowed,
      `this key may not mint realtime credentials: it has ${reason}, and a session opened with one talks to the provider directly, ` +
        `where it would bypass them (connect through the gateway's /v1/realtime instead). To allow it anyway, add a pattern matching /v1${path} to the key's allowed_routes.`,
    );
  }

  /**
   * What governs a key that asks for work the gateway cannot govern on `route`, as words for the refusal
   * (its model allow-list, else its budget, each with why it does not hold there); null when nothing
   * does, or when the key's `allowed_routes` name the route explicitly (the default, no patterns, does
   * not count).
   */
  private governedBy(key: VirtualKey, route: string, modelsNote: string, budgetNote: string): string | null {
    if (key.allowedRoutes.length > 0 && routeAllowed(key.allowedRoutes, route)) return null;
    if (key.models.length > 0) return `a model allow-list (${modelsNote})`;
    const budget = this.budgetOf(key);
    return budget === null ? null : `${budget} (${budgetNote})`;
  }

  /** Which budget governs the key, as words for a refusal; null when none does (LimitIndex: from memory). */
  private budgetOf(key: VirtualKey): string | null {
    if (key.budget.totalTokens !== null || key.budget.totalUsdMicros !== null) return 'a budget of its own';
    const limited = this.limits.limitedScope(scopesOf(key));
    return limited ? `a budget on scope '${limited}'` : null;
  }

  /**
   * A POST to a path that runs a model, which named none: 400 when the key has a model allow-list (the
   * upstream would pick a default model the list may not admit), or, for an upload, when routing
   * decides by model. An upload's model is read from the form fields before its first file part
   * (src/proxy/multipart-head.ts), so it must come first.
   */
  checkModelNamed(key: VirtualKey, method: string, path: string, upload: boolean, routedByModel: boolean): void {
    if (method !== 'POST' || !MODEL_PATHS.has(lenient(path))) return;
    if (key.models.length === 0 && !(upload && routedByModel)) return;
    const why = key.models.length > 0 ? 'this key may use only some models' : 'the gateway routes by model';
    throw new GatewayError(
      ErrorCode.InvalidRequest,
      upload
        ? `${why}: the upload must carry its 'model' form field before the file part, within its first 64 KiB`
        : `${why}: the request must name its model`,
      'model',
    );
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
