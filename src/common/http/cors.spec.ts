import { ServerResponse, IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { loadAppConfig } from '../../app-config';
import { ConfigError } from '../../config/config-error';
import { mergedVary, parseCorsOrigins } from './cors';

function problems(env: Record<string, string>): string[] {
  try {
    loadAppConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('CORS_ALLOWED_ORIGINS', () => {
  it('is off when unset or empty', () => {
    expect(parseCorsOrigins('')).toEqual({ origins: null, problems: [] });
    expect(parseCorsOrigins(' , ')).toEqual({ origins: null, problems: [] });
    expect(loadAppConfig({}).server.cors).toBeNull();
  });

  it('takes exact origins, normalised the way browsers send them (case, default port, trailing slash)', () => {
    const { origins } = parseCorsOrigins('https://App.Example.com, http://localhost:5173/ ,https://x.example:443');
    expect(origins).toEqual(new Set(['https://app.example.com', 'http://localhost:5173', 'https://x.example']));
    expect(loadAppConfig({ CORS_ALLOWED_ORIGINS: 'http://localhost:3000', CORS_MAX_AGE_SECS: '60' }).server.cors).toEqual({ origins: new Set(['http://localhost:3000']), maxAgeSecs: 60 });
  });

  it('takes * alone', () => {
    expect(parseCorsOrigins('*').origins).toBe('*');
    expect(parseCorsOrigins('*, https://a.example').problems).toEqual(['CORS_ALLOWED_ORIGINS: "*" allows every origin and must stand alone']);
  });

  it('refuses what is not an origin, naming each entry, at start-up', () => {
    const found = problems({ CORS_ALLOWED_ORIGINS: 'https://a.example/app,null,ftp://files.example,https://user@b.example,*.example.com,https://ok.example' });
    expect(found).toEqual([
      'CORS_ALLOWED_ORIGINS: "https://a.example/app" is not an origin (expected http(s)://host[:port], no path, query or user)',
      'CORS_ALLOWED_ORIGINS: "null" is not an origin (expected http(s)://host[:port], no path, query or user)',
      'CORS_ALLOWED_ORIGINS: "ftp://files.example" is not an origin (expected http(s)://host[:port], no path, query or user)',
      'CORS_ALLOWED_ORIGINS: "https://user@b.example" is not an origin (expected http(s)://host[:port], no path, query or user)',
      'CORS_ALLOWED_ORIGINS: "*.example.com" is not an origin (expected http(s)://host[:port], no path, query or user)',
    ]);
    expect(problems({ CORS_MAX_AGE_SECS: '100000' })).toHaveLength(1);
  });
});

describe('mergedVary', () => {
  const response = () => new ServerResponse(new IncomingMessage(new Socket()));

  it('keeps the front door\'s `vary: origin` when a route writes its own vary', () => {
    const res = response();
    res.setHeader('vary', 'origin');
    expect(mergedVary(res, 'Accept-Encoding')).toBe('origin, Accept-Encoding');
    expect(mergedVary(res, ['Accept-Encoding', 'Origin'])).toBe('origin, Accept-Encoding');
  });

  it('leaves a route\'s vary alone when the door set none', () => {
    expect(mergedVary(response(), 'accept-encoding')).toBe('accept-encoding');
  });
});
