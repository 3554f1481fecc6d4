import type { IncomingMessage } from 'node:http';
import { gatewayFileSchema } from '../config/gateway-file';
import { forwardedHeaders } from '../proxy/upstream-dispatch';
import { basePathOf } from './backend-types';

const backend = (fields: Record<string, unknown>) => gatewayFileSchema.parse({ backends: [{ name: 'b', base_url: 'http://up.example', api_key: 'sk-upstream-secret', ...fields }] }).backends[0];

/** Every header a client might send, credentials of each API included. */
const CLIENT = {
  authorization: 'Bearer sk-virtual-key',
  'x-api-key': 'sk-virtual-key',
  'x-goog-api-key': 'sk-virtual-key',
  cookie: 'a=b',
  accept: 'application/json',
  'user-agent': 'sdk/1',
  'openai-beta': 'assistants=v2',
  'openai-organization': 'org-1',
  'anthropic-version': '2023-01-01',
  'anthropic-beta': 'prompt-caching-2024-07-31',
  'x-stainless-lang': 'js',
};
const headersFor = (fields: Record<string, unknown>) => forwardedHeaders({ headers: CLIENT } as unknown as IncomingMessage, backend(fields), 'req-1', 'application/json');

describe('backend types', () => {
  it('defaults to openai: the key as a bearer token, OpenAI headers only', () => {
    expect(backend({}).type).toBe('openai');
    expect(headersFor({})).toEqual({
      accept: 'application/json',
      'user-agent': 'sdk/1',
      'openai-beta': 'assistants=v2',
      'content-type': 'application/json',
      'x-request-id': 'req-1',
      authorization: 'Bearer sk-upstream-secret',
    });
  });

  it("anthropic: the key in x-api-key, the client's anthropic-version and anthropic-beta, no other credential", () => {
    expect(headersFor({ type: 'anthropic' })).toEqual({
      accept: 'application/json',
      'user-agent': 'sdk/1',
      'anthropic-version': '2023-01-01',
      'anthropic-beta': 'prompt-caching-2024-07-31',
      'content-type': 'application/json',
      'x-request-id': 'req-1',
      'x-api-key': 'sk-upstream-secret',
    });
    // Without the client's version, the SDKs' own.
    const bare = forwardedHeaders({ headers: {} } as IncomingMessage, backend({ type: 'anthropic' }), 'req-1');
    expect(bare['anthropic-version']).toBe('2023-06-01');
  });

  it('gemini: the key in x-goog-api-key, nothing of the client but accept and user-agent', () => {
    expect(headersFor({ type: 'gemini', pass_client_headers: true })).toEqual({
      accept: 'application/json',
      'user-agent': 'sdk/1',
      'content-type': 'application/json',
      'x-request-id': 'req-1',
      'x-goog-api-key': 'sk-upstream-secret',
    });
  });

  it("puts the type's base path in front only when base_url has none", () => {
    expect(basePathOf(backend({ type: 'anthropic' }))).toBe('/v1');
    expect(basePathOf(backend({ type: 'gemini', base_url: 'https://generativelanguage.googleapis.com/' }))).toBe('/v1beta');
    expect(basePathOf(backend({ type: 'anthropic', base_url: 'https://corp.example/anthropic/v1/' }))).toBe('/anthropic/v1');
    expect(basePathOf(backend({ base_url: 'https://api.openai.com/v1' }))).toBe('/v1');
    expect(basePathOf(backend({}))).toBe('');
  });

  it('refuses an unknown type', () => {
    expect(() => backend({ type: 'cohere' })).toThrow();
  });
});
