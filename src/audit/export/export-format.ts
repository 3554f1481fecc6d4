import { AuditRowView, HashChain, canonicalJson } from './hash-chain';

type ChainLink = ReturnType<HashChain['link']>;

export const EXPORT_FORMATS = ['jsonl', 'csv'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const CONTENT_TYPES: Record<ExportFormat, string> = {
  jsonl: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8; header=present',
};

/** CSV columns, in this order, always; the first line of a CSV export is exactly this header. */
export const CSV_COLUMNS = ['id', 'ts', 'kind', 'request_id', 'key_id', 'tenant_id', 'payload', 'prev_hash', 'hash'] as const;
export const CSV_HEADER = CSV_COLUMNS.join(',');
const CRLF = '\r\n';

/**
 * The export line (JSONL) or record (CSV) of `row`, linked into `chain`. The payload is written in
 * its canonical form, which the hash needs anyway.
 */
export function exportLine(format: ExportFormat, row: AuditRowView, chain: HashChain): string {
  const payloadJson = canonicalJson(row.payload);
  const link = chain.link(row, payloadJson);
  return format === 'csv' ? csvRecord(row, payloadJson, link) : jsonlLine(row, payloadJson, link);
}

/** One JSONL line: the row's fields in a fixed order, then its chain link; ends in `\n`. */
function jsonlLine(row: AuditRowView, payloadJson: string, link: ChainLink): string {
  return (
    `{"id":${JSON.stringify(row.id)},"ts":${row.ts},"kind":${JSON.stringify(row.kind)},"request_id":${json(row.request_id)},` +
    `"key_id":${json(row.key_id)},"tenant_id":${json(row.tenant_id)},"payload":${payloadJson},` +
    `"prev_hash":"${link.prev_hash}","hash":"${link.hash}"}\n`
  );
}

/**
 * One CSV record (RFC 4180, CRLF-terminated). Every string cell is quoted (`"` doubled), so an empty
 * string is `""` while null is an empty, unquoted cell; `ts` and the hashes are bare; `payload` is the
 * payload as a JSON string in a quoted cell (it starts with `{`). Text cells are neutralised for
 * spreadsheets (neutralise); the hash covers the values, so the verifier undoes it (unneutralise).
 */
function csvRecord(row: AuditRowView, payloadJson: string, link: ChainLink): string {
  return (
    `${text(row.id)},${row.ts},${text(row.kind)},${text(row.request_id)},${text(row.key_id)},${text(row.tenant_id)},` +
    `${quote(payloadJson)},${link.prev_hash},${link.hash}${CRLF}`
  );
}

/**
 * OWASP's rule against CSV injection: a cell starting with `=`, `+`, `-`, `@`, tab or CR is a formula
 * to a spreadsheet (quoting does not stop it), so it gets a leading `'`, which spreadsheets show as
 * text. A cell already starting with `'` gets one too, so that removing exactly one leading `'` gives
 * back every value: the export stays lossless and its hash chain verifiable.
 */
const FORMULA_START = /^[=+\-@\t\r']/;

export function neutralise(value: string): string {
  return FORMULA_START.test(value) ? `'${value}` : value;
}

/** The value of a neutralised text cell (the inverse of neutralise). */
export function unneutralise(cell: string): string {
  return cell.startsWith("'") ? cell.slice(1) : cell;
}

function text(value: string | null): string {
  return value === null ? '' : quote(neutralise(value));
}

function json(value: string | null): string {
  return value === null ? 'null' : JSON.stringify(value);
}

export function csvHeaderLine(): string {
  return CSV_HEADER + CRLF;
}

function quote(value: string | null): string {
  return value === null ? '' : `"${value.replace(/"/g, '""')}"`;
}

/** A parsed CSV cell: whether it was quoted tells `""` (empty string) from an empty cell (null). */
export interface CsvCell {
  value: string;
  quoted: boolean;
}

/** Splits one complete CSV record (without its line terminator) into cells; a string on error. */
export function parseCsvCells(record: string): CsvCell[] | string {
  const cells: CsvCell[] = [];
  let i = 0;
  for (;;) {
    if (record[i] === '"') {
      let value = '';
      let j = i + 1;
      for (;;) {
        const close = record.indexOf('"', j);
        if (close === -1) return `unterminated quoted cell ${cells.length + 1}`;
        value += record.slice(j, close);
        if (record[close + 1] === '"') {
          value += '"';
          j = close + 2;
        } else {
          i = close + 1;
          break;
        }
      }
      cells.push({ value, quoted: true });
    } else {
      const end = record.indexOf(',', i);
      const value = end === -1 ? record.slice(i) : record.slice(i, end);
      if (value.includes('"')) return `stray quote in cell ${cells.length + 1}`;
      cells.push({ value, quoted: false });
      i = end === -1 ? record.length : end;
    }
    if (i >= record.length) return cells;
    if (record[i] !== ',') return `unexpected character after the quoted cell ${cells.length}`;
    i++;
  }
}

/**
 * Reassembles CSV records from physical lines (split on `\n`): a record continues while it holds an
 * odd number of quote characters, i.e. a quoted cell spans a line break. The CR of a CRLF record
 * terminator is removed; line breaks inside quoted cells are kept as they were.
 */
export class CsvRecordAssembler {
  private pending: string | null = null;
  private pendingLine = 0;
  private quotes = 0;

  /** Feeds one physical line (1-based `lineNumber`); returns a complete record, or null if it continues. */
  push(line: string, lineNumber: number): { record: string; line: number } | null {
    if (this.pending === null) {
      this.pending = line;
      this.pendingLine = lineNumber;
      this.quotes = 0;
    } else {
      this.pending += '\n' + line;
    }
    this.quotes += countQuotes(line);
    if (this.quotes % 2 === 1) return null;
    const record = this.pending.endsWith('\r') ? this.pending.slice(0, -1) : this.pending;
    this.pending = null;
    return { record, line: this.pendingLine };
  }

  /** The start line of a record left open at the end of the input, if any. */
  get unterminatedLine(): number | null {
    return this.pending === null ? null : this.pendingLine;
  }

  /** Characters held for an unfinished record (to bound memory on a malformed file). */
  get pendingLength(): number {
    return this.pending?.length ?? 0;
  }
}

function countQuotes(line: string): number {
  let n = 0;
  for (let i = line.indexOf('"'); i !== -1; i = line.indexOf('"', i + 1)) n++;
  return n;
}
