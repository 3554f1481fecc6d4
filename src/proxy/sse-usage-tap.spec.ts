import { SseUsageTap } from './sse-usage-tap';

const chunk = (content: string, usage = true) =>
  `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${content}"},"finish_reason":null}]${usage ? ',"usage":null' : ''}}\n\n`;
const usageChunk = 'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}\n\n';
const done = 'data: [DONE]\n\n';

function run(tap: SseUsageTap, stream: string, cut: number): string {
  const bytes = Buffer.from(stream);
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += cut) out.push(tap.push(bytes.subarray(i, i + cut)));
  out.push(tap.end());
  return Buffer.concat(out).toString();
}

describe('SseUsageTap', () => {
  const upstream = chunk('Hé') + chunk('llo') + usageChunk + done;
  const expectedUsage = { promptTokens: 9, completionTokens: 2, cachedTokens: 4, totalTokens: 11 };

  it.each([1, 3, 7, 1000])('passes the stream through byte for byte when the client asked for usage (chunks of %i)', (cut) => {
    const tap = new SseUsageTap(false);
    expect(run(tap, upstream, cut)).toBe(upstream);
    expect(tap.usage).toEqual(expectedUsage);
  });

  it.each([1, 5, 1000])('strips what the gateway injected when the client did not ask (chunks of %i)', (cut) => {
    const tap = new SseUsageTap(true);
    expect(run(tap, upstream, cut)).toBe(chunk('Hé', false) + chunk('llo', false) + done);
    expect(tap.usage).toEqual(expectedUsage);
  });

  it('forwards each complete event as soon as it ends', () => {
    const tap = new SseUsageTap(true);
    expect(tap.push(Buffer.from(chunk('a').slice(0, 10))).length).toBe(0);
    expect(tap.push(Buffer.from(chunk('a').slice(10))).toString()).toBe(chunk('a', false));
  });

  it('reads usage from a Responses API response.completed event', () => {
    const tap = new SseUsageTap(false);
    run(tap, 'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}}\n\n', 1000);
    expect(tap.usage).toEqual({ promptTokens: 5, completionTokens: 7, cachedTokens: 0, totalTokens: 12 });
  });
});
