import { Injectable } from '@nestjs/common';
import { ActiveStorage } from '../storage/active-storage';

/** How long one probe's answer stands: `/ready` polled under load writes at most once a second. */
const FRESH_MS = 1000;

/**
 * Whether the store takes a write (`/ready`): the backend's own probe (SQLite: a row written and
 * deleted through the writer thread, which fails when the disk is full or another connection holds the
 * write lock past busy_timeout; PostgreSQL: a transaction id, refused by a read-only server), else a
 * job-lock lease (redis `SET NX PX`, a MongoDB lease row). One probe at a time, its answer reused for a
 * second; a probe that does not answer within the timeout counts as a failure.
 */
@Injectable()
export class WriteProbe {
  private last: { at: number; ok: boolean } | null = null;
  private running: Promise<boolean> | null = null;

  constructor(private readonly storage: ActiveStorage) {}

  async writable(timeoutMs: number): Promise<boolean> {
    if (this.last && Date.now() - this.last.at < FRESH_MS) return this.last.ok;
    this.running ??= this.probe(timeoutMs).then((ok) => {
      this.last = { at: Date.now(), ok };
      this.running = null;
      return ok;
    });
    return this.running;
  }

  private async probe(timeoutMs: number): Promise<boolean> {
    const backend = this.storage.backend;
    const write = backend.probeWrite ? backend.probeWrite() : backend.locks.runExclusive('ditto:write-probe', 5000, () => Promise.resolve());
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([write.then(() => true, () => false), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
