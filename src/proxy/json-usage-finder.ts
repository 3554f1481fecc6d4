import { ResponseObject, Usage, usageFrom } from './domain/usage';

/** A captured value larger than this is not kept (real `usage` objects are a few hundred bytes). */
const USAGE_VALUE_MAX_BYTES = 64 * 1024;
/**
 * A body up to this size is held as it passes (its chunks, not copied) and parsed whole when first
 * read: V8's JSON parser costs a fraction of the byte scan per byte, and nearly every answer is this
 * small. A larger body is scanned from then on, so memory stays bounded whatever the size.
 */
const PARSED_WHOLE_MAX_BYTES = 16 * 1024;
/**
 * Top-level members whose values are kept: usage, a verbose_json transcript's `duration`, and what
 * names a Responses object (`id`, `status`, `model`: a background response is charged when it is seen
 * completed, docs/budgets.md).
 */
const CAPTURED_KEYS: ReadonlySet<string> = new Set(['usage', 'duration', 'id', 'status', 'model']);

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

/**
 * Finds the top-level `usage` member of a JSON response as its bytes stream past, without keeping
 * or parsing the whole body: a byte-level scan (JSON's structural characters are ASCII, and UTF-8
 * never uses those bytes inside a multi-byte character) that tracks strings and depth, copies only the
 * values of the top-level keys `usage` and `duration`, and parses just those; it also counts the
 * items of a top-level `data` array (the images of an images answer that reports no usage). A
 * response of any size costs the same; one small enough is parsed whole instead
 * (PARSED_WHOLE_MAX_BYTES), with the same result. A key given twice counts as its last value, as the
 * client reads it. Another API's answer names other keys (`capturedKeys`: Gemini's `usageMetadata`),
 * read with `values`.
 */
export class JsonUsageFinder {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** At depth 1 of the top-level object, between `{`/`,` and the next key. */
  private expectingKey = false;
  /** Raw bytes of the top-level key being read, or null when not reading one. */
  private key: number[] | null = null;
  /** The last top-level key read. */
  private lastKey = '';
  /** The bytes of the value being copied, and its key. */
  private capture: Buffer[] | null = null;
  private captureKey = '';
  private captured = 0;
  /** The parsed values of the captured keys (null: present but unreadable). */
  private readonly found = new Map<string, unknown>();
  /** Inside the top-level `data` array: its items so far, and whether the current one was counted. */
  private inData = false;
  private itemStarted = false;
  /** Items of the top-level `data` array; null when there is none. */
  private items: number | null = null;
  /** The chunks of a body still small enough to be parsed whole; null once it is scanned instead. */
  private held: Buffer[] | null = [];
  private heldBytes = 0;

  constructor(
    private readonly capturedKeys: ReadonlySet<string> = CAPTURED_KEYS,
    private readonly parsedWholeMaxBytes = PARSED_WHOLE_MAX_BYTES,
  ) {}

  /** The parsed values of the captured keys found (null: present but unreadable). */
  get values(): ReadonlyMap<string, unknown> {
    this.settle();
    return this.found;
  }

  /** Items of the top-level `data` array; null when there is none. */
  get dataItems(): number | null {
    this.settle();
    return this.items;
  }

  push(chunk: Buffer): void {
    if (this.held !== null) {
      if (this.heldBytes + chunk.length <= this.parsedWholeMaxBytes) {
        this.held.push(chunk);
        this.heldBytes += chunk.length;
        return;
      }
      this.scanHeld();
    }
    this.scan(chunk);
  }

  /** Reads what is held, once the body has ended: parsed whole when it is JSON, else scanned (as a larger body is). */
  private settle(): void {
    if (this.held === null) return;
    let body: unknown;
    try {
      body = JSON.parse(this.held.length === 1 ? this.held[0].toString('utf8') : Buffer.concat(this.held).toString('utf8'));
    } catch {
      return this.scanHeld();
    }
    this.held = null;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
    const members = body as Record<string, unknown>;
    for (const key of this.capturedKeys) if (Object.hasOwn(members, key)) this.found.set(key, members[key]);
    if (Array.isArray(members.data)) this.items = members.data.length;
  }

  private scanHeld(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const chunk of held) this.scan(chunk);
  }

  private scan(chunk: Buffer): void {
    // Where, in this chunk, the part of the usage value still to be copied starts (-1: nothing to copy).
    let copyFrom = this.capture ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (this.inString) {
        if (this.key === null && !this.escaped) {
          // Inside a value string: jump to its next quote (long strings, base64 images, cost a memchr).
          const quote = chunk.indexOf(QUOTE, i);
          const end = quote === -1 ? chunk.length : quote;
          let backslashes = 0;
          for (let j = end - 1; j >= i && chunk[j] === BACKSLASH; j--) backslashes++;
          if (quote === -1) {
            this.escaped = backslashes % 2 === 1;
            i = chunk.length;
          } else {
            i = quote;
            if (backslashes % 2 === 0) this.inString = false;
          }
          continue;
        }
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) {
          this.inString = false;
          if (this.key) this.endKey();
          continue;
        }
        this.key?.push(c);
        continue;
      }
      if (c <= 0x20) continue;
      if (this.depth === 1) {
        if (c === COLON) {
          this.expectingKey = false;
          continue;
        }
        if (c === COMMA || c === CLOSE_OBJECT) {
          if (this.capture) this.finish(chunk, copyFrom, i);
          copyFrom = -1;
          this.expectingKey = true;
        } else if (this.expectingKey) {
          if (c === QUOTE) this.key = [];
        } else if (this.startsUsage()) {
          this.capture = [];
          this.captured = 0;
          copyFrom = i;
        }
      }
      if (this.inData && this.depth === 2) {
        if (c === COMMA) this.itemStarted = false;
        else if (c !== CLOSE_ARRAY && !this.itemStarted) {
          this.itemStarted = true;
          this.items!++;
        }
      }
      if (c === QUOTE) this.inString = true;
      else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        this.depth++;
        if (this.depth === 1) this.expectingKey = c === OPEN_OBJECT;
        else if (this.depth === 2 && c === OPEN_ARRAY && this.lastKey === 'data') {
          this.inData = true;
          this.items = 0;
        }
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        if (this.depth === 2) this.inData = false;
        this.depth--;
      }
    }
    if (this.capture && copyFrom !== -1) this.keep(chunk.subarray(copyFrom));
  }

  /** The usage the response reported (read once it has ended); null when there was none. */
  get usage(): Usage | null {
    this.settle();
    return usageFrom({ usage: this.found.get('usage'), duration: this.found.get('duration') });
  }

  /** The response object's top-level `id`, `status` and `model` (each when a string). */
  get object(): ResponseObject {
    this.settle();
    const text = (key: string) => (typeof this.found.get(key) === 'string' ? (this.found.get(key) as string) : undefined);
    return { id: text('id'), status: text('status'), model: text('model') };
  }

  private endKey(): void {
    const bytes = this.key!;
    this.key = null;
    // A short key of printable ASCII without escapes (every key a response has) is its bytes as they are.
    if (bytes.length <= 64 && bytes.every((b) => b >= 0x20 && b < 0x7f && b !== BACKSLASH)) {
      this.lastKey = String.fromCharCode(...bytes);
      return;
    }
    try {
      this.lastKey = JSON.parse(`"${Buffer.from(bytes).toString('utf8')}"`) as string;
    } catch {
      this.lastKey = '';
    }
  }

  private startsUsage(): boolean {
    // A key given twice counts as the last one, as a client's JSON.parse reads it.
    if (this.capture !== null || !this.capturedKeys.has(this.lastKey)) return false;
    this.captureKey = this.lastKey;
    return true;
  }

  private keep(bytes: Buffer): void {
    if (this.capture === null) return;
    this.captured += bytes.length;
    if (this.captured > USAGE_VALUE_MAX_BYTES) {
      this.capture = null;
      this.found.set(this.captureKey, null);
      return;
    }
    this.capture.push(Buffer.from(bytes));
  }

  /** The usage value ends just before `end` (the `,` or `}` that closes it at depth 1). */
  private finish(chunk: Buffer, from: number, end: number): void {
    if (from !== -1) this.keep(chunk.subarray(from, end));
    if (this.capture === null) return;
    try {
      this.found.set(this.captureKey, JSON.parse(Buffer.concat(this.capture).toString('utf8')));
    } catch {
      this.found.set(this.captureKey, null);
    }
    this.capture = null;
  }
}
