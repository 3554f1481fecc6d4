import { canonicalJson } from '../export/hash-chain';
import { AUDIT_MAX_DEPTH, DEPTH_MARKER, OMITTED_MEMBERS, TRUNCATED_SUFFIX, boundPayload } from './audit-payload';

const MiB = 1024 * 1024;

/** The copy must be what JSON gives back for it: plain data every store and the export take as is. */
function plainJson(payload: unknown): void {
  expect(JSON.parse(JSON.stringify(payload))).toEqual(payload);
  expect(() => canonicalJson(payload)).not.toThrow();
}

describe('boundPayload', () => {
  it('keeps an ordinary payload exactly as JSON.stringify would write it', () => {
    const payload = { method: 'POST', status: 200, usage: { total_tokens: 12 }, scopes: ['key:a'], gone: undefined, error: null, at: new Date(0), ratio: 0.5 };
    const { payload: copy, bytes } = boundPayload(payload, MiB);
    expect(copy).toEqual(JSON.parse(JSON.stringify(payload)));
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(1024);
  });

  it('keeps 32 levels of nesting, objects or arrays, and marks what is deeper', () => {
    let nested: unknown = 'leaf';
    for (let i = 0; i < 100; i++) nested = i % 2 ? { n: nested } : [nested];
    const { payload } = boundPayload({ nested }, MiB);
    let level: unknown = payload;
    let depth = 0;
    while (typeof level === 'object' && level !== null) {
      depth++;
      level = Array.isArray(level) ? level[0] : Object.values(level)[0];
    }
    expect(depth).toBe(AUDIT_MAX_DEPTH);
    expect(level).toBe(DEPTH_MARKER);
    plainJson(payload);
  });

  it('turns what JSON cannot write into plain values instead of throwing', () => {
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const shared = { x: 1 };
    const payload = {
      nan: NaN,
      inf: -Infinity,
      negativeZero: -0,
      big: 2n ** 70n,
      fn: () => 1,
      sym: Symbol('s'),
      sparse: [1, , 3], // eslint-disable-line no-sparse-arrays
      boxed: [new String('s'), new Number(2), new Boolean(false)],
      throwingGetter: Object.defineProperty({}, 'secret', { enumerable: true, get: () => { throw new Error('nope'); } }),
      throwingToJSON: { toJSON: () => { throw new Error('nope'); } },
      proxy: revoked.proxy,
      map: new Map([['a', 1]]),
      buffer: Buffer.from('hi'),
      twice: [shared, shared],
    };
    const { payload: copy } = boundPayload(payload, MiB);
    expect(copy).toEqual({
      nan: null,
      inf: null,
      negativeZero: 0,
      big: '1180591620717411303424',
      sparse: [1, null, 3],
      boxed: ['s', 2, false],
      throwingGetter: { secret: '[unserializable]' },
      throwingToJSON: '[unserializable]',
      proxy: '[unserializable]',
      map: {},
      buffer: { type: 'Buffer', data: [104, 105] },
      twice: [{ x: 1 }, { x: 1 }],
    });
    expect(Object.is(copy.negativeZero, 0)).toBe(true);
    plainJson(copy);
  });

  it('keeps a __proto__ member as data, never as the prototype', () => {
    const parsed = JSON.parse('{"__proto__":{"polluted":true},"a":1}');
    const { payload } = boundPayload(parsed, MiB);
    expect(Object.getPrototypeOf(payload)).toBe(Object.prototype);
    expect((payload as { polluted?: unknown }).polluted).toBeUndefined();
    expect(Object.keys(payload)).toEqual(['__proto__', 'a']);
    expect(JSON.stringify(payload)).toBe('{"__proto__":{"polluted":true},"a":1}');
  });

  it('makes strings well-formed and member names free of NUL, so that every store holds them alike', () => {
    const { payload } = boundPayload({ 'a\u0000b': 'x\u0000y', lone: 'a\ud800b', pair: '😀', 'k\udc00': 1 }, MiB);
    expect(payload).toEqual({ 'a\uFFFDb': 'x\u0000y', lone: 'a\uFFFDb', pair: '😀', 'k\uFFFD': 1 });
  });

  it('stays within the byte bound: cuts a long string, leaves out further members and elements, and says so', () => {
    const max = 64 * 1024;
    const { payload, bytes } = boundPayload({ first: 'a'.repeat(10_000), body: 'b'.repeat(200_000), after: 1 }, max);
    expect(bytes).toBeLessThanOrEqual(max);
    expect(payload.first).toBe('a'.repeat(10_000));
    expect(String(payload.body).endsWith(TRUNCATED_SUFFIX)).toBe(true);
    expect(String(payload.body).length).toBeGreaterThan(50_000);
    expect(payload[OMITTED_MEMBERS]).toBe(1);
    expect(payload.after).toBeUndefined();

    const many = boundPayload({ list: Array.from({ length: 100_000 }, (_, i) => i) }, max);
    const list = many.payload.list as unknown[];
    expect(list.length).toBeLessThan(10_000);
    expect(list.at(-1)).toMatch(/^\[truncated: \d+ more\]$/);
    expect(many.bytes).toBeLessThanOrEqual(max);
  });

  it('never cuts a surrogate pair in two', () => {
    // Forty bounds in a row: the cut falls on either half of a pair.
    for (let max = 16 * 1024; max < 16 * 1024 + 40; max++) {
      const { payload } = boundPayload({ s: '😀'.repeat(10_000) }, max);
      const s = String(payload.s);
      expect(s.endsWith(TRUNCATED_SUFFIX)).toBe(true);
      expect(s.slice(0, -TRUNCATED_SUFFIX.length)).toMatch(/^(😀)*$/u);
    }
  });

  it('bounds the work on a structure that repeats one object (a DAG whose JSON would be 2^40 long)', () => {
    let node: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 40; i++) node = { a: node, b: node };
    const started = Date.now();
    const { payload, bytes } = boundPayload(node, MiB);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(bytes).toBeLessThanOrEqual(MiB);
    plainJson(payload);
  });

  it('counts what objects cost in memory, not only their JSON characters', () => {
    // 20,000 empty objects are 60 KB of JSON but about a megabyte of heap.
    const { bytes } = boundPayload({ body: JSON.parse(`[${'{},'.repeat(19_999)}{}]`) }, 8 * MiB);
    expect(bytes).toBeGreaterThan(20_000 * 32);
  });
});

describe('boundPayload: payloads that are plain JSON already', () => {
  /** The copying walk's answer for `payload` (a toJSON wrapper costs nothing and is never plain). */
  const copied = (payload: unknown, max = 1 << 20) => boundPayload({ toJSON: () => payload }, max);

  it('keeps a plain payload as it is, counted exactly as its copy would be', () => {
    const payload = {
      protocol: 'openai',
      path: '/v1/chat/completions',
      model: 'gpt-4o-mini',
      status: 200,
      usage: { prompt_tokens: 9, completion_tokens: 2, cached_tokens: 0, total_tokens: 11 },
      scopes: ['key:a', 'tenant:t'],
      charged: null,
      latency_ms: 1.25,
      cached: false,
      error: null,
      nested: [[1, [2, { deep: 'é 😀' }]], []],
    };
    const bounded = boundPayload(payload, 1 << 20);
    expect(bounded.payload).toBe(payload);
    expect(bounded).toEqual({ payload: copied(payload).payload, bytes: copied(payload).bytes });
  });

  it.each([
    ['an undefined member', { a: 1, b: undefined }],
    ['-0', { a: -0 }],
    ['a non-finite number', { a: Infinity }],
    ['a lone surrogate', { a: 'x\uD800' }],
    ['a NUL in a member name', { 'a\u0000b': 1 }],
    ['a long string', { a: 'x'.repeat(5000) }],
    ['a class instance', { at: new Date(0) }],
    ['a BigInt', { n: 10n }],
    ['an own __proto__ member', JSON.parse('{"__proto__":{"x":1}}')],
    ['nesting past the depth', JSON.parse(`${'{"a":'.repeat(40)}1${'}'.repeat(40)}`)],
    ['more than the byte bound', { a: 'y'.repeat(3000), b: 'z'.repeat(3000) }],
  ])('copies a payload with %s, as before', (_, payload) => {
    const bounded = boundPayload(payload, 2048 + 32 * 128);
    expect(bounded.payload).not.toBe(payload);
    expect(bounded).toEqual(copied(payload, 2048 + 32 * 128));
  });
});
