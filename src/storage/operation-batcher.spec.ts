import { OperationBatcher } from './operation-batcher';

/** A send that answers each operation with itself doubled once `release()` is called. */
function controlledSend() {
  const sends: number[][] = [];
  const pending: Array<() => void> = [];
  const send = (ops: number[]) => {
    sends.push(ops);
    return new Promise<unknown[]>((resolve) => pending.push(() => resolve(ops.map((op) => (op < 0 ? new Error(`bad ${op}`) : op * 2)))));
  };
  const release = async () => {
    pending.shift()!();
    await new Promise((r) => setImmediate(r));
  };
  return { sends, send, release };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('OperationBatcher', () => {
  it('with one send in flight, collects what arrives meanwhile into the next send, in order', async () => {
    const { sends, send, release } = controlledSend();
    const batcher = new OperationBatcher(send, { maxOps: 100, urgentFlushAt: Infinity, lingerMs: 5, maxInFlight: 1 });
    const first = [batcher.submit(1, true), batcher.submit(2, true)];
    await turn();
    expect(sends).toEqual([[1, 2]]);
    const next = [3, 4, 5].map((op) => batcher.submit(op, true));
    await turn();
    // Still one in flight: 3..5 wait for it.
    expect(sends).toEqual([[1, 2]]);
    await release();
    expect(await Promise.all(first)).toEqual([2, 4]);
    expect(sends).toEqual([[1, 2], [3, 4, 5]]);
    await release();
    expect(await Promise.all(next)).toEqual([6, 8, 10]);
  });

  it('sends urgent operations at the end of the turn (or at once when enough wait) and lets the others linger', async () => {
    const { sends, send, release } = controlledSend();
    const batcher = new OperationBatcher(send, { maxOps: 100, urgentFlushAt: 3, lingerMs: 20, maxInFlight: Infinity });
    const settle = batcher.submit(1, false);
    await turn();
    expect(sends).toEqual([]);
    const reserves = [2, 3, 4].map((op) => batcher.submit(op, true));
    // The third urgent one sent the batch at once, the lingering one with it.
    expect(sends).toEqual([[1, 2, 3, 4]]);
    const late = batcher.submit(5, false);
    await new Promise((r) => setTimeout(r, 30));
    expect(sends).toEqual([[1, 2, 3, 4], [5]]);
    await release();
    await release();
    expect(await Promise.all([settle, ...reserves, late])).toEqual([2, 4, 6, 8, 10]);
  });

  it('splits a long queue by maxOps, rejects an operation whose reply is an error alone, and all of a failed send', async () => {
    const sends: number[][] = [];
    const batcher = new OperationBatcher<number>(
      async (ops) => {
        sends.push(ops);
        if (ops.includes(99)) throw new Error('connection lost');
        return ops.map((op) => (op < 0 ? new Error(`bad ${op}`) : op));
      },
      { maxOps: 2, urgentFlushAt: Infinity, lingerMs: 5, maxInFlight: Infinity },
    );
    const results = await Promise.allSettled([1, -2, 3, 99, 5].map((op) => batcher.submit(op, true)));
    expect(sends).toEqual([[1, -2], [3, 99], [5]]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([1, 'bad -2', 'connection lost', 'connection lost', 5]);
  });

  it('drains: resolves once everything submitted so far, waiting or in flight, is answered', async () => {
    const { send, release } = controlledSend();
    const batcher = new OperationBatcher(send, { maxOps: 100, urgentFlushAt: Infinity, lingerMs: 1000, maxInFlight: 1 });
    const answered: number[] = [];
    void batcher.submit(1, true).then((v) => answered.push(v as number));
    await turn();
    void batcher.submit(2, false).then((v) => answered.push(v as number));
    let drained = false;
    const draining = batcher.drain().then(() => (drained = true));
    await release();
    expect(drained).toBe(false);
    await release();
    await draining;
    expect(answered).toEqual([2, 4]);
    expect(await batcher.drain().then(() => 'idle')).toBe('idle');
  });
});
