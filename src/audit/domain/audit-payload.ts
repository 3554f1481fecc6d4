/**
 * The bounded, JSON-safe copy of an audit payload that is queued and stored (docs/audit.md, "Bounds").
 *
 * A payload may carry request and response bodies (AUDIT_LOG_BODIES), i.e. whatever a client sent:
 * nesting JSON.stringify cannot recurse through, strings no store holds alike, megabytes. Stores then
 * refuse the event, or the serialiser throws, and an event that can never be written must not reach a
 * store. So every payload is copied once, when it is recorded, into plain JSON that every backend
 * holds exactly: this never throws, and it bounds depth and size. A payload that is such JSON already
 * (PlainCheck) is kept as it is: the caller hands it over and does not change it afterwards.
 */

/** Levels of nesting kept (the payload object is level 1); a deeper object or array becomes DEPTH_MARKER.
 * MongoDB refuses documents nested more than 100 levels; recursive serialisers overflow far later. */
export const AUDIT_MAX_DEPTH = 32;

export const DEPTH_MARKER = '[truncated: nested too deep]';
export const CIRCULAR_MARKER = '[circular]';
export const UNSERIALIZABLE_MARKER = '[unserializable]';
/** Appended to a string cut short by the size bound. */
export const TRUNCATED_SUFFIX = '…[truncated]';
/** Member added to an object whose later members were left out by the size bound (value: how many). */
export const OMITTED_MEMBERS = '[truncated]';

/**
 * The size estimate, in bytes, that AUDIT_EVENT_MAX_BYTES and AUDIT_QUEUE_MAX_BYTES count: close to
 * what the copy occupies in memory (V8 objects cost more than their JSON), and an upper bound of its
 * JSON length except for escaped control characters.
 */
const STRING_COST = 16;
const SCALAR_COST = 8;
const CONTAINER_COST = 32;
const MEMBER_COST = 8;
/**
 * Kept back from the bound while copying: once it is spent, each open object or array still adds its
 * omission marker, and a value being read finishes at a marker; that stays within this much.
 */
const SLACK = AUDIT_MAX_DEPTH * 128;

/**
 * Strings at least this long are copied into a string of their own. A substring can keep the whole
 * string it was cut from alive (V8 sliced strings): a 64 KiB head of a 10 MiB body must not hold the
 * 10 MiB in the queue. Shorter strings come from parsed JSON or code, not from slicing large text.
 */
const COPY_FROM_CHARS = 4096;

export interface BoundedPayload {
  payload: Record<string, unknown>;
  /** Estimated bytes of `payload` (see STRING_COST and the others). */
  bytes: number;
}

/** Replacement for what no store holds alike: lone surrogates (not UTF-8), NUL in a member name (BSON). */
const REPLACEMENT = '\uFFFD';

/** `s` as well-formed UTF-16 (lone surrogates become U+FFFD), in storage of its own when long. */
export function storableString(s: string): string {
  const wellFormed = isWellFormed(s) ? s : toWellFormed(s);
  return wellFormed.length >= COPY_FROM_CHARS ? ownCopy(wellFormed) : wellFormed;
}

/**
 * Copies `payload` into plain JSON values within `maxBytes` (estimated) and AUDIT_MAX_DEPTH levels:
 * - what JSON.stringify would write stays as it would write it (toJSON is called, undefined members
 *   and functions are left out, non-finite numbers become null);
 * - a BigInt becomes its decimal string; a value whose getter or toJSON throws, UNSERIALIZABLE_MARKER;
 *   an object that contains itself, CIRCULAR_MARKER; nesting beyond the limit, DEPTH_MARKER;
 * - strings are made well-formed; NUL in a member name becomes U+FFFD;
 * - once `maxBytes` is spent, a string is cut (TRUNCATED_SUFFIX), and the remaining elements of an
 *   array (a last element `[truncated: N more]`) or members of an object (member OMITTED_MEMBERS: N)
 *   are left out.
 */
export function boundPayload(payload: unknown, maxBytes: number): BoundedPayload {
  const budget = Math.max(0, maxBytes - SLACK);
  // Most payloads (every proxied request's) are plain JSON already, well within the bounds: they are
  // kept as they are after one read-only pass, which costs a fraction of the copy.
  const plain = new PlainCheck(budget);
  if (plain.object(payload, 1)) return { payload: payload as Record<string, unknown>, bytes: budget - plain.left };
  const walk = new Walk(budget);
  let copy = walk.value(payload, 1, []);
  if (typeof copy !== 'object' || copy === null || Array.isArray(copy)) copy = { value: copy === undefined ? null : copy };
  return { payload: copy as Record<string, unknown>, bytes: budget - walk.left };
}

/**
 * Whether a value is already what Walk would copy it into, the same size by the same count: plain
 * objects and arrays within the depth, well-formed strings shorter than COPY_FROM_CHARS, finite numbers
 * other than -0, booleans and null, nothing cut by the bound, no member name to change. Anything else
 * (a class instance, toJSON, undefined, a getter that throws, …) answers false, and the payload is copied.
 */
class PlainCheck {
  constructor(public left: number) {}

  object(value: unknown, depth: number): boolean {
    if (typeof value !== 'object' || value === null || depth > AUDIT_MAX_DEPTH) return false;
    this.left -= CONTAINER_COST;
    try {
      if (Array.isArray(value)) return Object.getPrototypeOf(value) === Array.prototype && this.elements(value, depth);
      return Object.getPrototypeOf(value) === Object.prototype && typeof (value as { toJSON?: unknown }).toJSON !== 'function' && this.members(value as Record<string, unknown>, depth);
    } catch {
      return false;
    }
  }

  private elements(value: unknown[], depth: number): boolean {
    for (let i = 0; i < value.length; i++) {
      if (this.left <= MEMBER_COST + STRING_COST) return false;
      this.left -= MEMBER_COST;
      if (!this.value(value[i], depth + 1)) return false;
    }
    return true;
  }

  private members(value: Record<string, unknown>, depth: number): boolean {
    for (const name in value) {
      if (!Object.hasOwn(value, name)) return false;
      if (this.left <= MEMBER_COST + STRING_COST + name.length) return false;
      this.left -= MEMBER_COST + STRING_COST + name.length;
      if (name === '__proto__' || name.length >= COPY_FROM_CHARS || name.includes('\u0000') || !isWellFormed(name)) return false;
      if (!this.value(value[name], depth + 1)) return false;
    }
    return true;
  }

  private value(value: unknown, depth: number): boolean {
    switch (typeof value) {
      case 'string':
        if (value.length >= COPY_FROM_CHARS || value.length > this.left - STRING_COST || !isWellFormed(value)) return false;
        this.left -= STRING_COST + value.length;
        return true;
      case 'number':
        this.left -= SCALAR_COST;
        return Number.isFinite(value) && !Object.is(value, -0);
      case 'boolean':
        this.left -= SCALAR_COST;
        return true;
      case 'object':
        if (value !== null) return this.object(value, depth);
        this.left -= SCALAR_COST;
        return true;
      default:
        return false;
    }
  }
}

class Walk {
  constructor(public left: number) {}

  /** The copy of `value` at nesting `depth`; undefined for what JSON leaves out (functions, symbols, undefined). */
  value(value: unknown, depth: number, ancestors: object[]): unknown {
    switch (typeof value) {
      case 'string':
        return this.string(value);
      case 'number':
        this.left -= SCALAR_COST;
        return Number.isFinite(value) ? value + 0 : null; // + 0 turns -0 into 0
      case 'boolean':
        this.left -= SCALAR_COST;
        return value;
      case 'bigint':
        return this.string(value.toString());
      case 'object':
        if (value === null) {
          this.left -= SCALAR_COST;
          return null;
        }
        return this.object(value, depth, ancestors);
      default:
        return undefined;
    }
  }

  private string(s: string): string {
    const room = this.left - STRING_COST;
    if (s.length <= room) {
      this.left -= STRING_COST + s.length;
      return storableString(s);
    }
    // Keep what fits; never cut a surrogate pair in two.
    let keep = Math.max(0, room - TRUNCATED_SUFFIX.length);
    if (keep > 0 && isHighSurrogate(s.charCodeAt(keep - 1))) keep--;
    this.left -= STRING_COST + keep + TRUNCATED_SUFFIX.length;
    return storableString(s.slice(0, keep)) + TRUNCATED_SUFFIX;
  }

  private object(value: object, depth: number, ancestors: object[]): unknown {
    if (ancestors.includes(value)) return this.string(CIRCULAR_MARKER);
    try {
      const toJSON = (value as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') {
        const converted: unknown = toJSON.call(value);
        // As JSON.stringify: the result is written as it is, without calling its own toJSON.
        return typeof converted === 'object' && converted !== null ? this.container(converted, depth, ancestors) : this.value(converted, depth, ancestors);
      }
      if (value instanceof Number || value instanceof String || value instanceof Boolean) return this.value(value.valueOf(), depth, ancestors);
      return this.container(value, depth, ancestors);
    } catch {
      // A throwing getter, toJSON or proxy trap: the value cannot be read, the rest of the payload can.
      return this.string(UNSERIALIZABLE_MARKER);
    }
  }

  private container(value: object, depth: number, ancestors: object[]): unknown {
    if (depth > AUDIT_MAX_DEPTH) return this.string(DEPTH_MARKER);
    this.left -= CONTAINER_COST;
    ancestors.push(value);
    try {
      return Array.isArray(value) ? this.array(value, depth, ancestors) : this.members(value as Record<string, unknown>, depth, ancestors);
    } finally {
      ancestors.pop();
    }
  }

  private array(value: unknown[], depth: number, ancestors: object[]): unknown[] {
    const out: unknown[] = [];
    const length = value.length;
    for (let i = 0; i < length; i++) {
      if (this.left <= MEMBER_COST + STRING_COST) {
        out.push(`[truncated: ${length - i} more]`);
        this.left -= STRING_COST + 24;
        break;
      }
      this.left -= MEMBER_COST;
      const element = this.read(value, i, depth, ancestors);
      out.push(element === undefined ? null : element);
    }
    return out;
  }

  private members(value: Record<string, unknown>, depth: number, ancestors: object[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const names = Object.keys(value);
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      if (this.left <= MEMBER_COST + STRING_COST + name.length) {
        out[OMITTED_MEMBERS] = names.length - i;
        this.left -= MEMBER_COST + SCALAR_COST;
        break;
      }
      this.left -= MEMBER_COST + STRING_COST + name.length;
      const member = this.read(value, name, depth, ancestors);
      if (member === undefined) continue;
      const key = storableName(name);
      // `__proto__` as an own member (JSON.parse makes one): plain assignment would set the prototype.
      if (key === '__proto__') Object.defineProperty(out, key, { value: member, enumerable: true, writable: true, configurable: true });
      else out[key] = member;
    }
    return out;
  }

  private read(container: object, key: string | number, depth: number, ancestors: object[]): unknown {
    let member: unknown;
    try {
      member = (container as Record<string | number, unknown>)[key];
    } catch {
      return this.string(UNSERIALIZABLE_MARKER);
    }
    return this.value(member, depth + 1, ancestors);
  }
}

/** A member name, or a column such as a key id: also without NUL (BSON names and PostgreSQL text refuse it). */
export function storableName(name: string): string {
  const wellFormed = storableString(name);
  return wellFormed.includes('\u0000') ? wellFormed.replaceAll('\u0000', REPLACEMENT) : wellFormed;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

// String.prototype.isWellFormed / toWellFormed are in Node 20 but not in the ES2022 lib this compiles against.
type WellFormed = { isWellFormed(): boolean; toWellFormed(): string };
const isWellFormed = (s: string): boolean => (s as unknown as WellFormed).isWellFormed();
const toWellFormed = (s: string): string => (s as unknown as WellFormed).toWellFormed();

/** A copy of `s` that shares no storage with it (flattening a concatenation copies the characters). */
function ownCopy(s: string): string {
  return (s + ' ').slice(0, -1);
}
