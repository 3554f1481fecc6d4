import { StringDecoder } from 'node:string_decoder';
import { CSV_COLUMNS, CSV_HEADER, CsvCell, CsvRecordAssembler, ExportFormat, neutralise, parseCsvCells, unneutralise } from './export-format';
import { ChainedRow, GENESIS_HASH, chainHash } from './hash-chain';

/** A record longer than this is refused rather than buffered (audit rows are a few hundred bytes). */
const MAX_RECORD_CHARS = 16 * 1024 * 1024;
const HASH = /^[0-9a-f]{64}$/;
const JSONL_FIELDS = ['id', 'ts', 'kind', 'request_id', 'key_id', 'tenant_id', 'payload', 'prev_hash', 'hash'];

export type VerifyResult =
  | { ok: true; rows: number; lastHash: string }
  /** `row` is the 1-based data row (the CSV header is not a row); `line` the file line it starts on. */
  | { ok: false; row: number; line: number; reason: string };

/** Checks each row's link in order: prev_hash continues the chain and hash matches the content. */
export class ChainVerifier {
  private expectedPrev = GENESIS_HASH;

  /** Why `row` breaks the chain, or null when it is intact (then it becomes the chain's tip). */
  check(row: ChainedRow): string | null {
    if (row.prev_hash !== this.expectedPrev) {
      return this.expectedPrev === GENESIS_HASH
        ? `prev_hash of the first row must be ${GENESIS_HASH} (rows missing at the start?)`
        : 'prev_hash differs from the previous row\'s hash (a row was removed, inserted or moved before this one)';
    }
    const computed = chainHash(row.prev_hash, row);
    if (computed !== row.hash) return `hash mismatch: the row's content does not match its hash (computed ${computed}, file has ${row.hash})`;
    this.expectedPrev = row.hash;
    return null;
  }

  get lastHash(): string {
    return this.expectedPrev;
  }
}

/** Splits a byte stream into lines on `\n`, decoding UTF-8 across chunk boundaries; constant memory per line. */
async function* lines(input: Input): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of input) {
    rest += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let start = 0;
    for (let nl = rest.indexOf('\n'); nl !== -1; nl = rest.indexOf('\n', start)) {
      yield rest.slice(start, nl);
      start = nl + 1;
    }
    rest = rest.slice(start);
    if (rest.length > MAX_RECORD_CHARS) throw new LineTooLong();
  }
  rest += decoder.end();
  if (rest.length > 0) yield rest;
}

class LineTooLong extends Error {}

/** A byte stream (a file's ReadStream) or any iterable of chunks. */
type Input = AsyncIterable<Buffer | string> | Iterable<Buffer | string>;

/** Verifies a JSONL or CSV export read from `input`, one line at a time. Never throws for bad content. */
export async function verifyExport(input: Input, format: ExportFormat): Promise<VerifyResult> {
  const verifier = new ChainVerifier();
  let rows = 0;
  let lineNumber = 0;
  const fail = (line: number, reason: string): VerifyResult => ({ ok: false, row: rows + 1, line, reason });
  try {
    if (format === 'jsonl') {
      let blank: number | null = null;
      for await (const line of lines(input)) {
        lineNumber++;
        if (line.trim() === '') {
          blank ??= lineNumber;
          continue;
        }
        if (blank !== null) return fail(blank, 'empty line');
        const row = parseJsonlRow(line);
        if (typeof row === 'string') return fail(lineNumber, row);
        const broken = verifier.check(row);
        if (broken) return fail(lineNumber, broken);
        rows++;
      }
    } else {
      const assembler = new CsvRecordAssembler();
      let header = false;
      for await (const line of lines(input)) {
        lineNumber++;
        const complete = assembler.push(line, lineNumber);
        if (complete === null) {
          if (assembler.pendingLength > MAX_RECORD_CHARS) throw new LineTooLong();
          continue;
        }
        if (!header) {
          if (complete.record !== CSV_HEADER) return { ok: false, row: 0, line: complete.line, reason: `the first line must be the header ${CSV_HEADER}` };
          header = true;
          continue;
        }
        if (complete.record === '' ) return fail(complete.line, 'empty line');
        const row = parseCsvRow(complete.record);
        if (typeof row === 'string') return fail(complete.line, row);
        const broken = verifier.check(row);
        if (broken) return fail(complete.line, broken);
        rows++;
      }
      const open = assembler.unterminatedLine;
      if (open !== null) return fail(open, 'unterminated quoted cell at the end of the file');
      if (!header) return { ok: false, row: 0, line: 1, reason: `empty file: a CSV export starts with the header ${CSV_HEADER}` };
    }
  } catch (error) {
    if (error instanceof LineTooLong) return fail(lineNumber + 1, `line longer than ${MAX_RECORD_CHARS} characters`);
    throw error;
  }
  return { ok: true, rows, lastHash: verifier.lastHash };
}

function parseJsonlRow(line: string): ChainedRow | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'not valid JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const fields = Object.keys(value);
  const unknown = fields.find((f) => !JSONL_FIELDS.includes(f));
  if (unknown !== undefined) return `unexpected field "${unknown}"`;
  const missing = JSONL_FIELDS.find((f) => !fields.includes(f));
  if (missing !== undefined) return `missing field "${missing}"`;
  return checkRow(value as Record<string, unknown>);
}

function parseCsvRow(record: string): ChainedRow | string {
  const cells = parseCsvCells(record);
  if (typeof cells === 'string') return cells;
  if (cells.length !== CSV_COLUMNS.length) return `expected ${CSV_COLUMNS.length} cells, found ${cells.length}`;
  const cell = (name: (typeof CSV_COLUMNS)[number]): CsvCell => cells[CSV_COLUMNS.indexOf(name)];
  // Text cells carry the value neutralised for spreadsheets (a leading '); the hash is over the value.
  const text = (c: CsvCell): string | null => (c.quoted || c.value !== '' ? unneutralise(c.value) : null);
  // Exactly as the export writes it: a cell a spreadsheet would evaluate is a changed file, not data.
  const formula = (['id', 'kind', 'request_id', 'key_id', 'tenant_id'] as const).find((name) => {
    const value = text(cell(name));
    return value !== null && neutralise(value) !== cell(name).value;
  });
  if (formula !== undefined) return `${formula} is not written as the export writes it (a cell starting with = + - @ tab or CR carries a leading ')`;
  const ts = cell('ts').value;
  let payload: unknown;
  try {
    payload = JSON.parse(cell('payload').value);
  } catch {
    return 'payload is not valid JSON';
  }
  return checkRow({
    id: text(cell('id')),
    ts: /^-?\d+$/.test(ts) ? Number(ts) : ts,
    kind: text(cell('kind')),
    request_id: text(cell('request_id')),
    key_id: text(cell('key_id')),
    tenant_id: text(cell('tenant_id')),
    payload,
    prev_hash: cell('prev_hash').value,
    hash: cell('hash').value,
  });
}

/** Type checks shared by both formats. */
function checkRow(v: Record<string, unknown>): ChainedRow | string {
  if (typeof v.id !== 'string') return 'id must be a string';
  if (!Number.isSafeInteger(v.ts)) return 'ts must be an integer (epoch ms)';
  if (typeof v.kind !== 'string') return 'kind must be a string';
  for (const f of ['request_id', 'key_id', 'tenant_id'] as const) {
    if (v[f] !== null && typeof v[f] !== 'string') return `${f} must be a string or null`;
  }
  if (typeof v.payload !== 'object' || v.payload === null || Array.isArray(v.payload)) return 'payload must be a JSON object';
  if (typeof v.prev_hash !== 'string' || !HASH.test(v.prev_hash)) return 'prev_hash must be 64 lower-case hex digits';
  if (typeof v.hash !== 'string' || !HASH.test(v.hash)) return 'hash must be 64 lower-case hex digits';
  return v as unknown as ChainedRow;
}
