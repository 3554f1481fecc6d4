import { SqlSession, TypeormStore, quoteIdentifier } from './typeorm-store';

/** A partition never spans more than a day (so an expired day goes at once) nor less than a second. */
const MIN_WIDTH_MS = 1000;
const MAX_WIDTH_MS = 86_400_000;
/** DDL waits at most this long for the table's lock (dropping a partition locks the parent, and
 * inserts queue behind that wait); a partition not created or dropped now is at the next run. */
const DDL_LOCK_TIMEOUT = '5s';
/** How far ahead of the clock a partition created at the frontier starts: more than the DDL may wait. */
const FRONTIER_MARGIN_MS = 10_000;

/** One time partition of the audit table: rows with from <= ts < to (from null: MINVALUE). */
export interface AuditPartition {
  name: string;
  from: number | null;
  to: number;
}

/**
 * The PostgreSQL audit table's time partitions (migration 1767657600000): their width is a quarter of
 * the retention (1 s – 1 day), so rows live at most a quarter longer than the retention before their
 * partition goes whole, and the batches only ever delete inside the one partition the cutoff falls in.
 * Partitions are created ahead of the clock by the retention job, under its lock; rows no partition
 * covers land in the DEFAULT partition and are pruned row by row.
 */
export class PostgresAuditPartitions {
  private readonly parent: string;
  private readonly defaultPartition: string;

  constructor(
    private readonly store: TypeormStore,
    private readonly schema: string,
  ) {
    this.parent = store.table('audit_log');
    this.defaultPartition = store.table('audit_log_default');
  }

  static widthFor(retentionMs: number): number {
    return Math.min(MAX_WIDTH_MS, Math.max(MIN_WIDTH_MS, Math.floor(retentionMs / 4 / 1000) * 1000));
  }

  /** The range partitions, oldest first (the DEFAULT partition is not among them). */
  async list(): Promise<AuditPartition[]> {
    const rows = await this.store.session((s) =>
      s.rows<{ name: string; bound: string }>(
        `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = to_regclass($1)`,
        [this.parent],
      ),
    );
    const partitions: AuditPartition[] = [];
    for (const { name, bound } of rows) {
      const range = /FROM \((MINVALUE|'(-?\d+)')\) TO \('(-?\d+)'\)/.exec(bound);
      if (range) partitions.push({ name, from: range[2] === undefined ? null : Number(range[2]), to: Number(range[3]) });
    }
    return partitions.sort((a, b) => a.to - b.to);
  }

  /**
   * Creates the partitions from where the last one ends (or a little ahead of `now`) up to `until`,
   * ending on multiples of `width`. A partition never starts before a row already in the DEFAULT
   * partition (PostgreSQL refuses a partition whose range the default holds rows of): those stay there
   * until they expire.
   */
  async createAhead(width: number, now: number, until: number): Promise<number> {
    const partitions = await this.list();
    const lastEnd = partitions.length === 0 ? Number.NEGATIVE_INFINITY : partitions[partitions.length - 1].to;
    const [{ newest }] = await this.store.session((s) => s.rows<{ newest: string | null }>(`SELECT max(ts)::text AS newest FROM ${this.defaultPartition}`));
    // Behind the clock (first run, or after a pause), the next partition starts a little ahead of it:
    // one starting now would race the rows being inserted into the default partition meanwhile.
    const frontier = lastEnd > now + FRONTIER_MARGIN_MS / 2 ? lastEnd : now + FRONTIER_MARGIN_MS;
    let from = Math.max(frontier, newest === null ? Number.NEGATIVE_INFINITY : Number(newest) + 1);
    let created = 0;
    while (from < until) {
      const to = (Math.floor(from / width) + 1) * width;
      const partition = this.table(`audit_log_p${from}`);
      // Created apart, then attached: ATTACH takes a lock on the parent that inserts do not wait for
      // (CREATE … PARTITION OF would block them while it waits for its own).
      await this.ddl(async (s) => {
        await s.run(`CREATE TABLE ${partition} (LIKE ${this.parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`);
        await s.run(`ALTER TABLE ${this.parent} ATTACH PARTITION ${partition} FOR VALUES FROM (${from}) TO (${to})`);
      });
      created++;
      from = to;
    }
    return created;
  }

  /** Drops the partitions whose rows are all older than `cutoff`; returns how many rows went with them. */
  async dropBefore(cutoff: number): Promise<number> {
    let dropped = 0;
    for (const partition of await this.list()) {
      if (partition.to > cutoff) break;
      try {
        dropped += await this.ddl(async (s) => {
          const [{ n }] = await s.rows<{ n: string }>(`SELECT count(*)::text AS n FROM ${this.table(partition.name)}`);
          await s.run(`DROP TABLE ${this.table(partition.name)}`);
          return Number(n);
        });
      } catch (error) {
        // What was dropped counts; the rest is tried again at the next run.
        if (dropped === 0) throw error;
        break;
      }
    }
    return dropped;
  }

  /** Live rows of every partition, from PostgreSQL's statistics (no scan; a little behind the writes). */
  async approximateCount(): Promise<number> {
    const [{ n }] = await this.store.session((s) =>
      s.rows<{ n: string }>(
        `SELECT coalesce(sum(s.n_live_tup), 0)::text AS n
           FROM pg_inherits i JOIN pg_stat_user_tables s ON s.relid = i.inhrelid
          WHERE i.inhparent = to_regclass($1)`,
        [this.parent],
      ),
    );
    return Number(n);
  }

  private table(name: string): string {
    return `${quoteIdentifier(this.schema)}.${quoteIdentifier(name)}`;
  }

  private ddl<T>(work: (s: SqlSession) => Promise<T>): Promise<T> {
    return this.store.transaction(async (s) => {
      await s.run(`SET LOCAL lock_timeout = '${DDL_LOCK_TIMEOUT}'`);
      return work(s);
    });
  }
}
