import { TurnBatchedStdout } from './pino-logger';

describe('TurnBatchedStdout', () => {
  it('writes the lines of one event-loop turn in one write, in order', async () => {
    const writes: string[] = [];
    const out = new TurnBatchedStdout({ write: (text: string) => writes.push(text) });
    out.write('a\n');
    out.write('b\n');
    out.write('c\n');
    expect(writes).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toEqual(['a\nb\nc\n']);
    out.write('d\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toEqual(['a\nb\nc\n', 'd\n']);
  });

  it('writes what is pending at once on flush (before exit), and nothing twice', async () => {
    const writes: string[] = [];
    const out = new TurnBatchedStdout({ write: (text: string) => writes.push(text) });
    out.write('last words\n');
    const done = jest.fn();
    out.flush(done);
    expect(writes).toEqual(['last words\n']);
    expect(done).toHaveBeenCalled();
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toEqual(['last words\n']);
  });
});
