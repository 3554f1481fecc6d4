import { editJson, scanJson, setMember } from './json-text';

const members = (text: string) => {
  const scan = scanJson(text, 64);
  if (!scan.members) throw new Error('not an object');
  return scan.members;
};
const edit = (text: string, edits: Record<string, (current: string | null) => string | undefined>) => editJson(text, members(text), new Map(Object.entries(edits)));

describe('scanJson', () => {
  it('finds the top-level members and their value spans, nested values skipped', () => {
    const text = ' { "a" : 1.0 , "b":{"a":[1,{"x":"}"}]} ,"c" : "q\\"}" } ';
    expect(members(text).map((m) => [m.key, text.slice(m.valueStart, m.valueEnd)])).toEqual([
      ['a', '1.0'],
      ['b', '{"a":[1,{"x":"}"}]}'],
      ['c', '"q\\"}"'],
    ]);
  });

  it('reports depth beyond the limit, duplicate top-level keys, and non-objects', () => {
    expect(scanJson(`${'['.repeat(65)}${']'.repeat(65)}`, 64).tooDeep).toBe(true);
    expect(scanJson(`{"a":${'{"b":'.repeat(63)}1${'}'.repeat(63)}}`, 64).tooDeep).toBe(false);
    expect(scanJson('{"max_tokens":1,"x":{"max_tokens":2},"max_tokens":99}', 64).duplicate).toBe('max_tokens');
    expect(scanJson('{"a":{"b":1,"b":2}}', 64).duplicate).toBeNull();
    expect(scanJson('{"\\u0061":1,"a":2}', 64).duplicate).toBe('a');
    expect(scanJson('[1,2]', 64).members).toBeNull();
  });
});

describe('editJson', () => {
  it('changes members in place and leaves every other byte as it was', () => {
    const text = '{"seed": 12345678901234567890, "temperature": 1.0, "max_tokens": 5000, "text": "caf\\u00e9 \\ud83d\\ude00", "z": 1}';
    expect(edit(text, { max_tokens: () => '300' })).toBe(text.replace('5000', '300'));
  });

  it('appends a missing member before the closing brace', () => {
    expect(edit('{"a": 1 }', { b: () => 'true' })).toBe('{"a": 1 ,"b":true}');
    expect(edit('{}', { b: () => '2' })).toBe('{"b":2}');
    expect(edit('{"a":1}', { b: () => undefined })).toBe('{"a":1}');
  });

  it('sets a member of a nested object, or replaces a value that is not one', () => {
    const text = '{"stream": true, "stream_options": {"x": 1.50}}';
    expect(edit(text, { stream_options: (current) => setMember(current, 'include_usage', 'true') })).toBe('{"stream": true, "stream_options": {"x": 1.50,"include_usage":true}}');
    expect(setMember('{"include_usage": false}', 'include_usage', 'true')).toBe('{"include_usage": true}');
    expect(setMember(null, 'include_usage', 'true')).toBe('{"include_usage":true}');
  });
});
