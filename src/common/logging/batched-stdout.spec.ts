import { BatchedStdout } from './pino-logger';

const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('BatchedStdout', () => {
  // On the fake clock: a busy machine must not fire the batch timer before the test looks.
  it('joins the lines logged within a few milliseconds into one write, in order', () => {
    jest.useFakeTimers();
    try {
      const writes: string[] = [];
      const out = new BatchedStdout({ write: (text: string) => writes.push(text) });
      out.write('a\n');
      out.write('b\n');
      jest.advanceTimersByTime(1);
      out.write('c\n');
      expect(writes).toEqual([]);
      jest.advanceTimersByTime(30);
      expect(writes).toEqual(['a\nb\nc\n']);
      out.write('d\n');
      jest.advanceTimersByTime(30);
      expect(writes).toEqual(['a\nb\nc\n', 'd\n']);
    } finally {
      jest.useRealTimers();
    }
  });

  it('writes at once when 64 KiB are pending', () => {
    const writes: string[] = [];
    const out = new BatchedStdout({ write: (text: string) => writes.push(text) });
    const line = `${'x'.repeat(1023)}\n`;
    for (let i = 0; i < 64; i++) out.write(line);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toHaveLength(64 * 1024);
    out.flush();
  });

  it('writes what is pending at once on flush (before exit), and nothing twice', async () => {
    const writes: string[] = [];
    const out = new BatchedStdout({ write: (text: string) => writes.push(text) });
    out.write('last words\n');
    const done = jest.fn();
    out.flush(done);
    expect(writes).toEqual(['last words\n']);
    expect(done).toHaveBeenCalled();
    await later(30);
    expect(writes).toEqual(['last words\n']);
  });
});
