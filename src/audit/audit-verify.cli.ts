import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { CSV_HEADER, EXPORT_FORMATS, ExportFormat } from './export/export-format';
import { verifyExport } from './export/verify';

const USAGE = 'usage: npm run audit:verify -- [--format jsonl|csv] <export file>';

/** The format from the option, else the file name, else the first line (a CSV export starts with its header). */
async function detectFormat(file: string, option: string | undefined): Promise<ExportFormat | null> {
  if (option !== undefined) return (EXPORT_FORMATS as readonly string[]).includes(option) ? (option as ExportFormat) : null;
  if (/\.(jsonl|ndjson)$/i.test(file)) return 'jsonl';
  if (/\.csv$/i.test(file)) return 'csv';
  const handle = await open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(CSV_HEADER.length), 0, CSV_HEADER.length, 0);
    return buffer.subarray(0, bytesRead).toString('utf8') === CSV_HEADER ? 'csv' : 'jsonl';
  } finally {
    await handle.close();
  }
}

/**
 * Verifies the hash chain of a `GET /admin/audit/export` file, streaming it line by line (constant
 * memory). Exit 0: intact (prints the row count and the last hash); 1: the first broken row and why;
 * 2: usage error or unreadable file.
 */
export async function runVerifyCli(argv: string[]): Promise<number> {
  let file: string | undefined;
  let formatOption: string | undefined;
  try {
    const parsed = parseArgs({ args: argv, options: { format: { type: 'string' } }, allowPositionals: true });
    formatOption = parsed.values.format;
    if (parsed.positionals.length !== 1) throw new Error('expected exactly one file');
    file = parsed.positionals[0];
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  try {
    const format = await detectFormat(file, formatOption);
    if (format === null) {
      process.stderr.write(`unknown format "${formatOption}"\n${USAGE}\n`);
      return 2;
    }
    const result = await verifyExport(createReadStream(file), format);
    if (result.ok) {
      process.stdout.write(`OK: ${result.rows} row(s) verified (${format}), last hash ${result.lastHash}\n`);
      return 0;
    }
    const where = result.row === 0 ? `line ${result.line}` : `row ${result.row} (line ${result.line})`;
    process.stdout.write(`BROKEN at ${where}: ${result.reason}\n`);
    return 1;
  } catch (error) {
    process.stderr.write(`cannot read ${file}: ${(error as Error).message}\n`);
    return 2;
  }
}

if (require.main === module) {
  void runVerifyCli(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
