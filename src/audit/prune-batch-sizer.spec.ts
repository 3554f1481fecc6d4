import { PruneBatchSizer } from './prune-batch-sizer';

describe('PruneBatchSizer', () => {
  /** Drives the sizer against a store whose batch costs `fixed + perRow × rows` ms. */
  function settle(sizer: PruneBatchSizer, fixed: number, perRow: number, batches = 20): number[] {
    const sizes: number[] = [];
    for (let i = 0; i < batches; i++) {
      const rows = sizer.size;
      sizes.push(rows);
      sizer.observe(rows, fixed + perRow * rows);
    }
    return sizes;
  }

  it('grows a batch that is fast until a batch takes about the target time', () => {
    const sizer = new PruneBatchSizer(5000, 50, 100, 100_000);
    const sizes = settle(sizer, 2, 0.001); // 5,000 rows in 7 ms
    expect(sizes[1]).toBe(10_000); // at most twice the size per batch
    expect(sizer.size).toBe(48_000); // (50 - 2) / 0.001
  });

  it('shrinks a batch that is slow, and never below the minimum', () => {
    const sizer = new PruneBatchSizer(5000, 50, 100, 100_000);
    settle(sizer, 1, 0.1); // 5,000 rows in 501 ms
    expect(sizer.size).toBe(490);
    settle(sizer, 1, 10);
    expect(sizer.size).toBe(100);
  });

  it('follows a store that becomes slower, and stays within the maximum', () => {
    const sizer = new PruneBatchSizer(5000, 50, 100, 20_000);
    settle(sizer, 0, 0.0001);
    expect(sizer.size).toBe(20_000);
    settle(sizer, 0, 0.01);
    expect(sizer.size).toBe(5000);
  });

  it('ignores a batch that found nothing to delete', () => {
    const sizer = new PruneBatchSizer(5000, 50, 100, 100_000);
    sizer.observe(0, 30);
    expect(sizer.size).toBe(5000);
  });
});
