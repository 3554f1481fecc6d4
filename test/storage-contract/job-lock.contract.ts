import { JobLease, JobLockResult } from '../../src/storage/ports/job-lock';
import { StorageBackend } from '../../src/storage/ports/storage-backend';
import { ContractTarget } from './contract-target';

export interface JobLockContractOptions {
  /**
   * How a lock whose holder never releases it becomes free: its lease lapses `ttlMs` after it was
   * taken (sqlite, mongodb, redis, memory, state), or the store frees it when the holder's session
   * ends (postgres advisory locks, which have no lease).
   */
  freedBy: 'ttl' | 'session-end';
}

/** Longer than any test: a lease that must not lapse while the test runs. */
const LONG_MS = 60_000;
/** Short enough to wait out in a test. */
const SHORT_MS = 300;

/** A promise and the function that resolves it, to hold a `work` open until the test lets it go. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A `work` that signals when it has started and finishes only when `release` is opened; `lease()` is
 * the lease it runs under, once entered. */
function heldWork<T>(value: T): { work: (lease: JobLease) => Promise<T>; entered: Promise<void>; release(): void; lease(): JobLease } {
  const entered = gate();
  const released = gate();
  let lease: JobLease | null = null;
  return {
    work: async (given) => {
      lease = given;
      entered.open();
      await released.wait;
      return value;
    },
    entered: entered.wait,
    release: released.open,
    lease: () => lease!,
  };
}

/** A lease renewed in the test below: long enough that a busy machine's pauses between renewals stay inside it. */
const RENEWED_MS = 600;

/**
 * The JobLock contract, run against the real store of each backend. `b` is a second instance opened
 * on the same store where instances share it, else the same instance (memory and state lock within
 * one process only).
 */
export function describeJobLockContract(target: ContractTarget, options: JobLockContractOptions): void {
  describe(`job lock contract: ${target.name}`, () => {
    let store: { open(): Promise<StorageBackend>; teardown(): Promise<void> };
    const opened: StorageBackend[] = [];
    let a: StorageBackend;
    let b: StorageBackend;

    const open = async (): Promise<StorageBackend> => {
      const backend = await store.open();
      opened.push(backend);
      return backend;
    };

    beforeEach(async () => {
      store = await target.prepare();
      a = await open();
      b = target.shared ? await open() : a;
    });

    afterEach(async () => {
      for (const backend of opened.splice(0)) await backend.close();
      await store.teardown();
    });

    it('answers ran:false at once while another holder runs, and runs once the lock is released', async () => {
      const first = heldWork('a');
      const running = a.locks.runExclusive('prune', LONG_MS, first.work);
      await first.entered;

      const second = jest.fn(async () => 'b');
      await expect(b.locks.runExclusive('prune', LONG_MS, second)).resolves.toEqual({ ran: false });
      await expect(a.locks.runExclusive('prune', LONG_MS, second)).resolves.toEqual({ ran: false });
      expect(second).not.toHaveBeenCalled();
      // Another name is another lock.
      await expect(b.locks.runExclusive('reaper', LONG_MS, async () => 'reaped')).resolves.toEqual({ ran: true, value: 'reaped' });

      first.release();
      await expect(running).resolves.toEqual({ ran: true, value: 'a' });
      await expect(b.locks.runExclusive('prune', LONG_MS, second)).resolves.toEqual({ ran: true, value: 'b' });
      expect(second).toHaveBeenCalledTimes(1);
    });

    it('releases the lock when work throws, and lets the error through', async () => {
      const failure = new Error('prune failed');
      await expect(
        a.locks.runExclusive('prune', LONG_MS, async () => {
          throw failure;
        }),
      ).rejects.toBe(failure);
      await expect(b.locks.runExclusive('prune', LONG_MS, async () => 'next')).resolves.toEqual({ ran: true, value: 'next' });
    });

    if (options.freedBy === 'ttl') {
      it('lets a lease lapse after ttlMs, and a late holder never frees its successor', async () => {
        const started = Date.now();
        const stale = heldWork('stale');
        const staleRun = a.locks.runExclusive('prune', SHORT_MS, stale.work);
        await stale.entered;
        await expect(b.locks.runExclusive('prune', LONG_MS, async () => 'early')).resolves.toEqual({ ran: false });

        // Retry until the lease lapses: each try either answers ran:false at once or starts the work.
        const successor = heldWork('successor');
        const entered = successor.entered.then(() => 'entered' as const);
        let successorRun: Promise<JobLockResult<string>> | null = null;
        while (successorRun === null) {
          const attempt = b.locks.runExclusive('prune', LONG_MS, successor.work);
          const outcome = await Promise.race([attempt, entered]);
          if (outcome === 'entered') successorRun = attempt;
          else {
            expect(outcome).toEqual({ ran: false });
            expect(Date.now() - started).toBeLessThan(SHORT_MS + 3000);
            await sleep(20);
          }
        }
        expect(Date.now() - started).toBeGreaterThanOrEqual(SHORT_MS * 0.9);

        // The stale holder finishes late: its release must leave the successor's lease in place.
        stale.release();
        await expect(staleRun).resolves.toEqual({ ran: true, value: 'stale' });
        await expect(a.locks.runExclusive('prune', LONG_MS, async () => 'third')).resolves.toEqual({ ran: false });

        successor.release();
        await expect(successorRun).resolves.toEqual({ ran: true, value: 'successor' });
        await expect(a.locks.runExclusive('prune', LONG_MS, async () => 'third')).resolves.toEqual({ ran: true, value: 'third' });
      });

      it('keeps a lease its holder renews past ttlMs; once it lapsed, renew answers false and another holder takes it', async () => {
        const held = heldWork('renewed');
        const run = a.locks.runExclusive('prune', RENEWED_MS, held.work);
        await held.entered;
        const started = Date.now();
        while (Date.now() - started < 2 * RENEWED_MS) {
          await sleep(RENEWED_MS / 4);
          await expect(held.lease().renew()).resolves.toBe(true);
          await expect(b.locks.runExclusive('prune', LONG_MS, async () => 'early')).resolves.toEqual({ ran: false });
        }
        // No longer renewed: it lapses, and cannot be renewed back even before anyone else takes it.
        await sleep(RENEWED_MS * 1.5);
        await expect(held.lease().renew()).resolves.toBe(false);
        await expect(b.locks.runExclusive('prune', LONG_MS, async () => 'next')).resolves.toEqual({ ran: true, value: 'next' });
        held.release();
        await expect(run).resolves.toEqual({ ran: true, value: 'renewed' });
      });
    } else {
      it('frees the lock when the holder closes (as when its process dies), whatever ttlMs', async () => {
        const stale = heldWork('stale');
        const staleRun = a.locks.runExclusive('prune', SHORT_MS, stale.work);
        await stale.entered;
        await sleep(SHORT_MS * 2);
        // No lease: a slow holder keeps the lock past ttlMs for as long as its session lives.
        await expect(b.locks.runExclusive('prune', LONG_MS, async () => 'early')).resolves.toEqual({ ran: false });
        await expect(stale.lease().renew()).resolves.toBe(true);

        await a.close();
        await expect(stale.lease().renew()).resolves.toBe(false);
        // The server frees the lock as it ends the session, a moment after the client hung up.
        let result: JobLockResult<string> = { ran: false };
        for (const until = Date.now() + 3000; !result.ran && Date.now() < until; await sleep(20)) {
          result = await b.locks.runExclusive('prune', LONG_MS, async () => 'after');
        }
        expect(result).toEqual({ ran: true, value: 'after' });

        stale.release();
        await expect(staleRun).resolves.toEqual({ ran: true, value: 'stale' });
      });
    }

    it('never runs two holders at once among 20 concurrent calls from two instances', async () => {
      let active = 0;
      let most = 0;
      const work = async () => {
        most = Math.max(most, ++active);
        await sleep(15);
        active--;
        return 'done';
      };
      // Staggered starts: some calls arrive while a holder runs, some just after one released.
      const results = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          await sleep((i % 10) * 4);
          return (i % 2 === 0 ? a : b).locks.runExclusive('prune', LONG_MS, work);
        }),
      );
      const ran = results.filter((r) => r.ran);
      expect(ran.length).toBeGreaterThanOrEqual(1);
      expect(most).toBe(1);
      expect(ran).toEqual(ran.map(() => ({ ran: true, value: 'done' })));
    });

    it('keeps the locks of separately prepared stores apart', async () => {
      const other = await target.prepare();
      const c = await other.open();
      try {
        const held = heldWork('a');
        const running = a.locks.runExclusive('prune', LONG_MS, held.work);
        await held.entered;
        await expect(c.locks.runExclusive('prune', LONG_MS, async () => 'c')).resolves.toEqual({ ran: true, value: 'c' });
        held.release();
        await running;
      } finally {
        await c.close();
        await other.teardown();
      }
    });
  });
}
