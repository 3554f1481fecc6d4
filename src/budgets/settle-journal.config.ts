import { defineConfig } from '../config/config-slice';
import { integer } from '../config/env-schema';

/** Bounds of the settle journal (docs/budgets.md, "Store faults"); where it lives is DATA_DIR (storage). */
export const settleJournalConfig = defineConfig(
  'settleJournal',
  {
    SETTLE_JOURNAL_MAX_ENTRIES: integer(1, 100_000, 10_000_000),
    SETTLE_JOURNAL_MAX_BYTES: integer(4096, 64 * 1024 * 1024, 4 * 1024 * 1024 * 1024),
  },
  (env) => ({
    /** Settles the journal holds at most; one more is refused (its request's charge is logged as lost). */
    maxEntries: env.SETTLE_JOURNAL_MAX_ENTRIES,
    /** Bytes the journal file may grow to. */
    maxBytes: env.SETTLE_JOURNAL_MAX_BYTES,
  }),
);
