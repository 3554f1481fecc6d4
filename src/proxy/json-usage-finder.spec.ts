import { JsonUsageFinder } from './json-usage-finder';

/** Every case both ways: scanned byte by byte (a body too large to hold), and held and parsed whole. */
const WAYS = [
  ['scanned', 0],
  ['parsed whole', undefined],
] as const;

function findWith(text: string, cut: number, parsedWholeMax?: number) {
  const finder = new JsonUsageFinder(undefined, parsedWholeMax);
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += cut) finder.push(bytes.subarray(i, i + cut));
  return finder.usage;
}

describe.each(WAYS)('JsonUsageFinder (%s)', (_, parsedWholeMax) => {
  const find = (text: string, cut: number) => findWith(text, cut, parsedWholeMax);

  const chat = JSON.stringify({
    id: 'chatcmpl-1',
    choices: [{ index: 0, message: { role: 'assistant', content: 'a "usage": {"prompt_tokens": 999} in text, é 😀 {[' } }],
    usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11, prompt_tokens_details: { cached_tokens: 4 } },
    system_fingerprint: 'fp',
  });

  it.each([1, 2, 7, 64, 100_000])('reads the top-level usage wherever the chunks are cut (%i bytes)', (cut) => {
    expect(find(chat, cut)).toEqual({ promptTokens: 9, completionTokens: 2, cachedTokens: 4, totalTokens: 11 });
  });

  it('ignores usage keys below the top level, and finds usage as the last member or after large data', () => {
    expect(find('{"data":[{"usage":{"prompt_tokens":5}}]}', 3)).toBeNull();
    const big = `{"data":[{"b64_json":"${'A'.repeat(9 * 1024 * 1024)}"}],"usage":{"input_tokens":50,"output_tokens":4160,"total_tokens":4210}}`;
    expect(find(big, 65_536)).toEqual({ promptTokens: 50, completionTokens: 4160, cachedTokens: 0, totalTokens: 4210 });
    expect(find('{ "us\\u0061ge" : { "prompt_tokens" : 3 , "completion_tokens" : 1 } }', 5)).toMatchObject({ promptTokens: 3, completionTokens: 1 });
  });

  it.each([1, 3, 5])('handles escaped quotes and backslash runs split across chunks (%i bytes)', (cut) => {
    const text = '{"a":"x\\\\","b":"q\\"}\\\\\\"","usage":{"note":"a\\"b}\\\\","prompt_tokens":7,"completion_tokens":1},"z":"\\\\"}';
    expect(JSON.parse(text).usage.prompt_tokens).toBe(7);
    expect(find(text, cut)).toMatchObject({ promptTokens: 7, completionTokens: 1 });
  });

  it('answers null when there is no usage, when it is null, or when the body is not JSON', () => {
    expect(find('{"id":"x"}', 4)).toBeNull();
    expect(find('{"usage":null}', 4)).toBeNull();
    expect(find('not json', 4)).toBeNull();
    expect(find('[{"usage":{"prompt_tokens":1}}]', 4)).toBeNull();
  });

  it("reads whisper-1's duration usage and a verbose_json transcript's duration", () => {
    expect(find('{"text":"hi","usage":{"type":"duration","seconds":9.2}}', 3)).toEqual({ promptTokens: 0, completionTokens: 0, cachedTokens: 0, totalTokens: 0, seconds: 9.2 });
    expect(find('{"task":"transcribe","duration":12.3456,"segments":[{"duration":99}],"text":"x"}', 4)).toMatchObject({ seconds: 12.346, totalTokens: 0 });
    // usage wins over duration when both are there.
    expect(find('{"duration":5,"usage":{"type":"tokens","input_tokens":20,"output_tokens":4,"total_tokens":24}}', 2)).toEqual({ promptTokens: 20, completionTokens: 4, cachedTokens: 0, totalTokens: 24 });
  });

  it.each([1, 5, 65_536])('counts the items of the top-level data array, whatever they hold (%i-byte chunks)', (cut) => {
    const counted = (text: string) => {
      const finder = new JsonUsageFinder(undefined, parsedWholeMax);
      const bytes = Buffer.from(text);
      for (let i = 0; i < bytes.length; i += cut) finder.push(bytes.subarray(i, i + cut));
      return finder.dataItems;
    };
    const image = `{"b64_json":"${'QUJD'.repeat(300_000)}","revised_prompt":"a [cat], {on} \\"mat\\""}`;
    expect(counted(`{"created":1,"data":[${image},${image},{"url":"https://x/y?a=[1]"}]}`)).toBe(3);
    expect(counted('{"data":[],"x":[1,2]}')).toBe(0);
    expect(counted('{"data":[ "a" , ["b","c"] , 3 ]}')).toBe(3);
    expect(counted('{"created":1}')).toBeNull();
    expect(counted('{"meta":{"data":[1,2]}}')).toBeNull();
  });

  it('counts a key given twice as its last value, as the client reads it', () => {
    const twice = '{"usage":{"prompt_tokens":1,"completion_tokens":1},"x":1,"usage":{"prompt_tokens":50,"completion_tokens":7}}';
    expect(JSON.parse(twice).usage.prompt_tokens).toBe(50);
    expect(find(twice, 3)).toMatchObject({ promptTokens: 50, completionTokens: 7 });
  });
});

describe.each(WAYS)('JsonUsageFinder: the Responses object (%s)', (_, parsedWholeMax) => {
  it('names the id, status and model of a response object, and no usage while it is queued', () => {
    const finder = new JsonUsageFinder(undefined, parsedWholeMax);
    const text = JSON.stringify({ id: 'resp_bg_1', object: 'response', status: 'queued', model: 'gpt-4o-mini-2024-07-18', output: [{ id: 'msg_1', status: 'x' }], usage: null, background: true });
    for (let i = 0; i < text.length; i += 7) finder.push(Buffer.from(text.slice(i, i + 7)));
    expect(finder.object).toEqual({ id: 'resp_bg_1', status: 'queued', model: 'gpt-4o-mini-2024-07-18' });
    expect(finder.usage).toBeNull();
  });
});
