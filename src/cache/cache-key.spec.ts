import { cacheBypassed, cacheKey, cacheScope, canonicalJson, isCacheableRequest } from './cache-key';

const base = {
  method: 'POST',
  path: '/v1/chat/completions',
  backends: ['openai', 'azure'],
  scope: 'tenant:acme',
  body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], temperature: 0 },
};

describe('canonicalJson', () => {
  it('sorts object keys at every depth and drops whitespace, keeping array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
  });

  it('gives the same text whatever the key order, and different text for different values', () => {
    const a = JSON.parse('{"model":"m","messages":[{"role":"user","content":"hi"}],"n":1}');
    const b = JSON.parse('{ "n": 1, "messages": [ { "content": "hi", "role": "user" } ], "model": "m" }');
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson({ ...a, n: 2 })).not.toBe(canonicalJson(a));
    expect(canonicalJson({ x: '1' })).not.toBe(canonicalJson({ x: 1 }));
    expect(canonicalJson({ x: null })).not.toBe(canonicalJson({}));
  });

  it('escapes strings like JSON, so a value cannot pose as structure', () => {
    expect(canonicalJson({ a: 'b","c":"d' })).toBe('{"a":"b\\",\\"c\\":\\"d"}');
    expect(canonicalJson({ a: 'b","c":"d' })).not.toBe(canonicalJson({ a: 'b', c: 'd' }));
  });
});

describe('cacheKey', () => {
  it('is a hex SHA-256, equal for equal requests whatever the key order or backend order', () => {
    const key = cacheKey(base);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    const reordered = { temperature: 0, messages: [{ content: 'hi', role: 'user' }], model: 'gpt-4o-mini' };
    expect(cacheKey({ ...base, body: reordered, backends: ['azure', 'openai'], method: 'post' })).toBe(key);
  });

  it('differs when any part differs', () => {
    const key = cacheKey(base);
    const variants = [
      { ...base, scope: 'tenant:other' },
      { ...base, scope: 'key:k1' },
      { ...base, backends: ['openai'] },
      { ...base, path: '/v1/completions' },
      { ...base, method: 'PUT' },
      { ...base, body: { ...base.body, temperature: 1 } },
      { ...base, body: { ...base.body, messages: [{ role: 'user', content: 'hi!' }] } },
    ];
    const keys = new Set([key, ...variants.map(cacheKey)]);
    expect(keys.size).toBe(variants.length + 1);
  });

  it('keeps parts apart: moving characters from one part to the next changes the key', () => {
    expect(cacheKey({ ...base, backends: ['ab', 'c'] })).not.toBe(cacheKey({ ...base, backends: ['a', 'bc'] }));
    expect(cacheKey({ ...base, backends: ['a,b'] })).not.toBe(cacheKey({ ...base, backends: ['a', 'b'] }));
    expect(cacheKey({ ...base, path: '/v1/x', scope: 'ykey:1' })).not.toBe(cacheKey({ ...base, path: '/v1/xy', scope: 'key:1' }));
  });
});

describe('cacheScope', () => {
  const tenanted = { id: 'k1', tenantId: 'acme' };
  const loose = { id: 'k2', tenantId: null };

  it('scopes by key, by tenant (a key without one: by key) or globally', () => {
    expect(cacheScope(tenanted, 'key')).toBe('key:k1');
    expect(cacheScope(tenanted, 'tenant')).toBe('tenant:acme');
    expect(cacheScope(loose, 'tenant')).toBe('key:k2');
    expect(cacheScope(tenanted, 'global')).toBe('global');
    expect(cacheScope(loose, 'global')).toBe('global');
  });

  it('never gives two tenants, or two tenantless keys, the same scope', () => {
    expect(cacheScope({ id: 'k3', tenantId: 'other' }, 'tenant')).not.toBe(cacheScope(tenanted, 'tenant'));
    expect(cacheScope({ id: 'k4', tenantId: null }, 'tenant')).not.toBe(cacheScope(loose, 'tenant'));
  });
});

describe('isCacheableRequest', () => {
  const body = { model: 'm', messages: [] };

  it('accepts non-streaming POSTs with a JSON object body to the three cached routes', () => {
    expect(isCacheableRequest('POST', '/v1/chat/completions', body)).toBe(true);
    expect(isCacheableRequest('POST', '/v1/completions', { model: 'm', prompt: 'x', stream: false })).toBe(true);
    expect(isCacheableRequest('POST', '/v1/embeddings', { model: 'e', input: 'x' })).toBe(true);
  });

  it('refuses streams, other methods, other paths (a query string included) and non-object bodies', () => {
    expect(isCacheableRequest('POST', '/v1/chat/completions', { ...body, stream: true })).toBe(false);
    expect(isCacheableRequest('GET', '/v1/chat/completions', body)).toBe(false);
    expect(isCacheableRequest('POST', '/v1/responses', body)).toBe(false);
    expect(isCacheableRequest('POST', '/v1/audio/transcriptions', body)).toBe(false);
    expect(isCacheableRequest('POST', '/v1/chat/completions?api-version=1', body)).toBe(false);
    expect(isCacheableRequest('POST', '/v1/chat/completions', null)).toBe(false);
    expect(isCacheableRequest('POST', '/v1/chat/completions', [body])).toBe(false);
    expect(isCacheableRequest('POST', '/v1/chat/completions', '{"model":"m"}')).toBe(false);
  });
});

describe('cacheBypassed', () => {
  it('honours cache-control no-cache / no-store among other directives, in any case', () => {
    expect(cacheBypassed({ 'cache-control': 'no-cache' })).toBe(true);
    expect(cacheBypassed({ 'cache-control': 'max-age=0, No-Store' })).toBe(true);
    expect(cacheBypassed({ 'cache-control': ['max-age=60', 'no-cache'] })).toBe(true);
    expect(cacheBypassed({ 'cache-control': 'max-age=60' })).toBe(false);
    expect(cacheBypassed({ 'cache-control': 'no-transform' })).toBe(false);
  });

  it('honours x-ditto-cache-bypass: 1 only', () => {
    expect(cacheBypassed({ 'x-ditto-cache-bypass': '1' })).toBe(true);
    expect(cacheBypassed({ 'x-ditto-cache-bypass': '0' })).toBe(false);
    expect(cacheBypassed({})).toBe(false);
  });
});
