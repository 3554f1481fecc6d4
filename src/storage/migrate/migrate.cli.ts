import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { openBackend } from '../open-backend';
import { StorageBackend } from '../ports/storage-backend';
import { Progress, TableReport, migrateStorage } from './migrate';
import { parseStoreLocation } from './store-location';

const USAGE = 'usage: npm run storage:migrate -- --from <url|path> --to <url|path>';

/** Redraws one progress line in place on a terminal; elsewhere prints nothing until the summary. */
function terminalProgress(stream: NodeJS.WriteStream): Progress {
  if (!stream.isTTY) return () => undefined;
  let last = 0;
  return (table, done, total) => {
    const now = Date.now();
    if (now - last < 50 && done < total) return;
    last = now;
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    stream.write(`\r${table.padEnd(20)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}   `);
    if (done >= total) stream.write('\n');
  };
}

function summary(reports: TableReport[]): { text: string; ok: boolean } {
  const lines = ['table                 source   copied   target  check'];
  let ok = true;
  for (const r of reports) {
    const match = r.source === r.target;
    ok &&= match;
    lines.push(
      `${r.table.padEnd(20)} ${String(r.source).padStart(7)}  ${String(r.copied).padStart(7)}  ${String(r.target).padStart(7)}  ${match ? 'ok' : 'MISMATCH'}`,
    );
  }
  return { text: lines.join('\n') + '\n', ok };
}

export async function runMigrateCli(argv: string[]): Promise<number> {
  let from: string | undefined;
  let to: string | undefined;
  try {
    ({ values: { from, to } } = parseArgs({ args: argv, options: { from: { type: 'string' }, to: { type: 'string' } } }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!from || !to) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const opened: StorageBackend[] = [];
  try {
    const source = parseStoreLocation(from);
    const target = parseStoreLocation(to);
    if (source.backend === 'memory' || target.backend === 'memory') throw new Error('memory stores cannot be migrated');
    const a = await openBackend(source.backend, source.options);
    opened.push(a);
    const b = await openBackend(target.backend, target.options);
    opened.push(b);
    process.stdout.write(`migrating ${source.backend} ${source.label} -> ${target.backend} ${target.label}\n`);
    if (b.name === 'state') process.stdout.write('note: a state file keeps virtual keys only; ledgers, rate limits and audit are not copied\n');
    const reports = await migrateStorage(a, b, terminalProgress(process.stderr));
    const { text, ok } = summary(reports);
    process.stdout.write(text);
    if (!ok) process.stderr.write('count check failed: the target does not hold exactly the source rows (did it already hold other data?)\n');
    return ok ? 0 : 1;
  } catch (error) {
    process.stderr.write(`migration failed: ${(error as Error).message}\n`);
    return 1;
  } finally {
    for (const backend of opened) await backend.close().catch(() => undefined);
  }
}

if (require.main === module) {
  void runMigrateCli(process.argv.slice(2)).then((code) => process.exit(code));
}
