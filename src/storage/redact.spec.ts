import { redactUrl } from './redact';

describe('redactUrl', () => {
  it('removes user and password, and secret-looking query parameters', () => {
    expect(redactUrl('redis://:hunter2@cache:6379/0')).toBe('redis://***@cache:6379/0');
    expect(redactUrl('postgres://user:pw@db:5432/ditto?sslmode=require&password=x')).toBe('postgres://***@db:5432/ditto?sslmode=require&password=***');
    expect(redactUrl('mongodb://u:p@h1:27017,h2:27017/db?replicaSet=rs')).toBe('mongodb://***@h1:27017,h2:27017/db?replicaSet=rs');
    expect(redactUrl('redis://cache:6379')).toBe('redis://cache:6379');
    expect(redactUrl('not a url')).toBe('<unparseable url>');
  });
});
