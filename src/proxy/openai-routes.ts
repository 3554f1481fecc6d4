/** What a `/v1` route accepts: its methods, and whether a POST may be a multipart upload. */
export interface RouteRule {
  methods: readonly string[];
  /** multipart/form-data is streamed upstream as it arrives; every other body must be JSON. */
  uploads: boolean;
  /** A WebSocket endpoint (`/realtime`): served only as an upgrade, a plain request is answered 426. */
  websocket?: boolean;
}

const rule = (methods: string[], uploads = false): RouteRule => ({ methods, uploads });
const ID = '[^/]+';

/**
 * The OpenAI API's routes (path after `/v1`), most specific first. A path not listed here gets the
 * strictest treatment the API allows anywhere: GET, POST or DELETE, and a POST body must be JSON. The
 * OpenAI API uses no PUT or PATCH at all.
 */
const TABLE: Array<[string, RouteRule]> = [
    ['/chat/completions', rule(['GET', 'POST'])],
    [`/chat/completions/${ID}`, rule(['GET', 'POST', 'DELETE'])],
    [`/chat/completions/${ID}/messages`, rule(['GET'])],
    ['/completions', rule(['POST'])],
    ['/embeddings', rule(['POST'])],
    ['/moderations', rule(['POST'])],
    ['/responses', rule(['POST'])],
    ['/responses/input_tokens', rule(['POST'])],
    [`/responses/${ID}`, rule(['GET', 'DELETE'])],
    [`/responses/${ID}/cancel`, rule(['POST'])],
    [`/responses/${ID}/input_items`, rule(['GET'])],
    ['/images/generations', rule(['POST'])],
    ['/images/(edits|variations)', rule(['POST'], true)],
    ['/audio/speech', rule(['POST'])],
    ['/audio/(transcriptions|translations)', rule(['POST'], true)],
    ['/files', rule(['GET', 'POST'], true)],
    [`/files/${ID}`, rule(['GET', 'DELETE'])],
    [`/files/${ID}/content`, rule(['GET'])],
    ['/uploads', rule(['POST'])],
    [`/uploads/${ID}/parts`, rule(['POST'], true)],
    [`/uploads/${ID}/(complete|cancel)`, rule(['POST'])],
    ['/batches', rule(['GET', 'POST'])],
    [`/batches/${ID}`, rule(['GET'])],
    [`/batches/${ID}/cancel`, rule(['POST'])],
    ['/models', rule(['GET'])],
    [`/models/${ID}`, rule(['GET', 'DELETE'])],
    [`/containers/${ID}/files`, rule(['GET', 'POST'], true)],
    ['/videos', rule(['GET', 'POST'], true)],
    ['/realtime', { methods: ['GET'], uploads: false, websocket: true }],
];

/** Paths without parameters by exact match (the hot ones: one Map lookup); the rest by pattern, in order. */
const EXACT = new Map(TABLE.filter(([p]) => /^[a-z_/]+$/.test(p)).map(([p, r]) => [p, r]));
const PATTERNS: Array<[RegExp, RouteRule]> = TABLE.filter(([p]) => !EXACT.has(p)).map(([p, r]) => [new RegExp(`^${p}$`), r]);

const ANY_OTHER = rule(['GET', 'POST', 'DELETE']);

/** The rule for a path after `/v1` (no query). */
export function routeRule(path: string): RouteRule {
  const exact = EXACT.get(path);
  if (exact) return exact;
  for (const [pattern, r] of PATTERNS) if (pattern.test(path)) return r;
  return ANY_OTHER;
}
