/** Where one member of a JSON object sits in its text. */
export interface MemberSpan {
  key: string;
  /** Index of the key's opening quote. */
  keyStart: number;
  /** Indices of the value's first character and one past its last. */
  valueStart: number;
  valueEnd: number;
}

/** What one pass over a JSON text found, before it is parsed. */
export interface JsonScan {
  /** The text opens more than the allowed arrays/objects at once. */
  tooDeep: boolean;
  /** The members of the top-level object, in order; null when the text is not an object. */
  members: MemberSpan[] | null;
  /** A key the top-level object holds twice (parsers disagree on which one counts), or null. */
  duplicate: string | null;
}

/** JSON's whitespace: space, tab, line feed, carriage return. */
const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * One pass over JSON text, before any parser or recursive walk sees it: nesting depth (strings
 * skipped), and the spans of the top-level object's members so that fields can be changed in the
 * text itself. The text is not validated here (the parser does that); on text that is not JSON the
 * member list is whatever the scan made of it and must not be used.
 */
export function scanJson(text: string, maxDepth: number): JsonScan {
  let depth = 0;
  let members: MemberSpan[] | null = null;
  let duplicate: string | null = null;
  const seen = new Set<string>();
  // State of the top-level object: expecting a key, or inside a value starting at valueStart.
  let pendingKey: { key: string; keyStart: number } | null = null;
  let valueStart = -1;
  let i = skipWs(text, 0);
  const topIsObject = text.charCodeAt(i) === 0x7b;
  if (topIsObject) members = [];
  const closeValue = (end: number) => {
    if (pendingKey && valueStart !== -1 && members) {
      let last = end;
      while (last > valueStart && isWs(text.charCodeAt(last - 1))) last--;
      members.push({ key: pendingKey.key, keyStart: pendingKey.keyStart, valueStart, valueEnd: last });
      if (seen.has(pendingKey.key) && duplicate === null) duplicate = pendingKey.key;
      seen.add(pendingKey.key);
    }
    pendingKey = null;
    valueStart = -1;
  };
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 0x5c) i++;
        else if (s === 0x22) break;
      }
      if (topIsObject && depth === 1 && pendingKey === null) {
        const key = decodeKey(text.slice(start, i + 1));
        const colon = skipWs(text, i + 1);
        if (key !== null && text.charCodeAt(colon) === 0x3a) {
          pendingKey = { key, keyStart: start };
          i = colon;
          valueStart = skipWs(text, colon + 1);
          i = valueStart - 1;
        }
      }
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return { tooDeep: true, members: null, duplicate: null };
    } else if (c === 0x7d || c === 0x5d) {
      if (depth === 1 && topIsObject) closeValue(i);
      depth--;
    } else if (c === 0x2c && depth === 1 && topIsObject) {
      closeValue(i);
    }
  }
  return { tooDeep: false, members, duplicate };
}

function skipWs(text: string, from: number): number {
  let i = from;
  while (i < text.length && isWs(text.charCodeAt(i))) i++;
  return i;
}

function decodeKey(quoted: string): string | null {
  // Without an escape the key is the text between its quotes (the parser rejects control characters later).
  if (!quoted.includes('\\')) return quoted.slice(1, -1);
  try {
    return JSON.parse(quoted) as string;
  } catch {
    return null;
  }
}

/**
 * How a top-level member is changed: given its current value's text (null when absent), the new
 * value's JSON text, or undefined to leave it as it is (or absent).
 */
export type MemberEdit = (current: string | null) => string | undefined;

/**
 * `text` (a JSON object whose top-level members are `members`) with the given members changed in
 * place and missing ones appended, every other byte as it was: key order, spacing, number spellings
 * (`1.0`, integers beyond 2^53) and escapes reach the upstream exactly as the client wrote them.
 */
export function editJson(text: string, members: MemberSpan[], edits: ReadonlyMap<string, MemberEdit>): string {
  const replacements: Array<{ start: number; end: number; value: string }> = [];
  const appended: string[] = [];
  for (const [key, edit] of edits) {
    const found = members.filter((m) => m.key === key);
    if (found.length === 0) {
      const value = edit(null);
      if (value !== undefined) appended.push(`${JSON.stringify(key)}:${value}`);
      continue;
    }
    for (const member of found) {
      const value = edit(text.slice(member.valueStart, member.valueEnd));
      if (value !== undefined) replacements.push({ start: member.valueStart, end: member.valueEnd, value });
    }
  }
  let out = text;
  if (appended.length > 0) {
    const close = out.lastIndexOf('}');
    const separator = members.length > 0 ? ',' : '';
    out = `${out.slice(0, close)}${separator}${appended.join(',')}${out.slice(close)}`;
  }
  // Right to left, so earlier spans keep their positions (appends went after every member).
  for (const r of replacements.sort((a, b) => b.start - a.start)) out = out.slice(0, r.start) + r.value + out.slice(r.end);
  return out;
}

/** An object value's text with `key` set to `value` (other members untouched); any other value becomes `{key: value}`. */
export function setMember(objectText: string | null, key: string, value: string): string {
  if (objectText !== null) {
    const scan = scanJson(objectText, Number.MAX_SAFE_INTEGER);
    if (scan.members) return editJson(objectText, scan.members, new Map([[key, () => value]]));
  }
  return `{${JSON.stringify(key)}:${value}}`;
}
