/** When a batch goes out (OperationBatcher). */
export interface BatchingRules {
  /** Operations per send at most: more waiting go out as several sends, in order. */
  maxOps: number;
  /** Urgent operations waiting that send the batch at once instead of at the end of the event-loop turn. */
  urgentFlushAt: number;
  /** How long an operation that is not urgent may wait for an urgent one to share its send. */
  lingerMs: number;
  /** Sends in flight at most. Operations submitted meanwhile wait, and go out together as soon as one
   * returns: under load the batches grow instead of the sends. */
  maxInFlight: number;
}

interface Waiting<T> {
  op: T;
  resolve(reply: unknown): void;
  reject(error: unknown): void;
}

/**
 * Group commit on the caller's side (the Redis and PostgreSQL accounting ledgers): operations are
 * collected and handed to `send` as one batch, which applies them in submission order and answers each;
 * a reply that is an Error rejects its own caller only, a send that fails rejects every caller of its
 * batch.
 * - An urgent operation (a reserve: its request waits for it) goes out at the end of the event-loop turn,
 *   or at once when `urgentFlushAt` urgent ones are waiting.
 * - Any other (a settle: the response has been sent) waits up to `lingerMs` to ride along.
 */
export class OperationBatcher<T> {
  private waiting: Waiting<T>[] = [];
  private urgent = 0;
  private inFlight = 0;
  private immediate: NodeJS.Immediate | null = null;
  private timer: NodeJS.Timeout | null = null;
  private drained: Array<() => void> = [];
  private readonly flushNow = () => this.flush();

  constructor(
    private readonly send: (ops: T[]) => Promise<unknown[]>,
    private readonly rules: BatchingRules,
  ) {}

  submit(op: T, urgent: boolean): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ op, resolve, reject });
      if (urgent && ++this.urgent >= this.rules.urgentFlushAt) this.flush();
      else if (urgent) this.immediate ??= setImmediate(this.flushNow);
      else if (this.immediate === null) this.timer ??= setTimeout(this.flushNow, this.rules.lingerMs);
    });
  }

  /** Sends everything waiting (as far as maxInFlight lets it go now, the rest as sends return); resolves
   * once every operation submitted so far has been answered. */
  drain(): Promise<void> {
    this.flush();
    if (this.waiting.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private flush(): void {
    if (this.immediate !== null) clearImmediate(this.immediate);
    if (this.timer !== null) clearTimeout(this.timer);
    this.immediate = null;
    this.timer = null;
    this.urgent = 0;
    while (this.waiting.length > 0 && this.inFlight < this.rules.maxInFlight) {
      this.inFlight++;
      void this.dispatch(this.waiting.splice(0, this.rules.maxOps)).then(this.returned);
    }
  }

  private readonly returned = () => {
    this.inFlight--;
    if (this.waiting.length > 0) this.flush();
    else if (this.inFlight === 0) for (const resolve of this.drained.splice(0)) resolve();
  };

  /** One send; answers every caller, never rejects itself. */
  private dispatch(batch: Waiting<T>[]): Promise<void> {
    return this.send(batch.map((w) => w.op)).then(
      (replies) => {
        batch.forEach(({ resolve, reject }, i) => {
          const reply = replies[i];
          if (reply instanceof Error) reject(reply);
          else resolve(reply);
        });
      },
      (error: unknown) => {
        for (const { reject } of batch) reject(error);
      },
    );
  }
}
