import { createHash } from 'node:crypto';
import { csvHeaderLine, exportLine, parseCsvCells } from './export-format';
import { AuditRowView, GENESIS_HASH, HashChain, canonicalJson, canonicalRow, chainHash } from './hash-chain';
import { verifyExport } from './verify';

const rows: AuditRowView[] = [
  { id: 'a1', ts: 1000, kind: 'proxy', request_id: 'r1', key_id: 'k1', tenant_id: 'acme', payload: { status: 200, model: 'gpt-4o-mini' } },
  { id: 'a2', ts: 1000, kind: 'admin.key.update', request_id: 'multi\nline\r\nid', key_id: 'k,"1"', tenant_id: '', payload: { changed: ['name'], note: 'line1\nline2\r\nline3, "quoted"' } },
  { id: 'a3', ts: 2000, kind: 'proxy.blocked', request_id: null, key_id: null, tenant_id: null, payload: { nested: { z: 1, a: [true, null, 1.5] }, emoji: 'ü😀' } },
];

function exportOf(format: 'jsonl' | 'csv', input = rows): string {
  const chain = new HashChain();
  const lines = input.map((r) => exportLine(format, r, chain));
  return (format === 'csv' ? csvHeaderLine() : '') + lines.join('');
}

/** Feeds `text` in small chunks, splitting multi-byte characters across chunk boundaries. */
async function* chunked(text: string, size = 7): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text, 'utf8');
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

describe('audit export hash chain', () => {
  it('canonicalizes JSON with sorted members and no whitespace (RFC 8785 for these values)', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'x', null], c: false } })).toBe('{"a":{"c":false,"d":[1,"x",null]},"b":1}');
    expect(canonicalJson({ a: undefined, b: 1e21, c: 0.1 })).toBe('{"b":1e+21,"c":0.1}');
  });

  it('matches the worked example of docs/audit.md', () => {
    const row: AuditRowView = {
      id: '0mi8x2k3q1a2b3c4d000001', ts: 1763769600000, kind: 'admin.key.update', request_id: null, key_id: 'search-prod', tenant_id: 'acme',
      payload: { changed: ['name'], actor: 'admin' },
    };
    expect(canonicalRow(row)).toBe(
      '{"id":"0mi8x2k3q1a2b3c4d000001","key_id":"search-prod","kind":"admin.key.update","payload":{"actor":"admin","changed":["name"]},"request_id":null,"tenant_id":"acme","ts":1763769600000}',
    );
    expect(chainHash(GENESIS_HASH, row)).toBe('7b0e6f459536208b9df9f223646f52d9aff199bbf2d1862efba74a1dc2f0e382');
  });

  it('builds the canonical row exactly as canonicalJson would', () => {
    for (const row of rows) {
      const { id, ts, kind, request_id, key_id, tenant_id, payload } = row;
      expect(canonicalRow(row)).toBe(canonicalJson({ ts, tenant_id, request_id, payload, kind, key_id, id }));
    }
  });

  it('hashes prev_hash followed by the canonical row, starting from 64 zeros', () => {
    const row = rows[0];
    const canonical =
      '{"id":"a1","key_id":"k1","kind":"proxy","payload":{"model":"gpt-4o-mini","status":200},"request_id":"r1","tenant_id":"acme","ts":1000}';
    const expected = createHash('sha256').update(GENESIS_HASH + canonical).digest('hex');
    expect(chainHash(GENESIS_HASH, row)).toBe(expected);
    const chain = new HashChain();
    expect(chain.link(row)).toEqual({ prev_hash: GENESIS_HASH, hash: expected });
    expect(chain.link(rows[1]).prev_hash).toBe(expected);
    const line = JSON.parse(exportLine('jsonl', row, new HashChain()));
    expect(line).toEqual({ ...row, prev_hash: GENESIS_HASH, hash: expected });
    expect(Object.keys(line)).toEqual(['id', 'ts', 'kind', 'request_id', 'key_id', 'tenant_id', 'payload', 'prev_hash', 'hash']);
  });

  it('writes CSV with every string quoted, null as an empty cell, and reads it back', () => {
    const record = exportLine('csv', rows[1], new HashChain());
    expect(record.endsWith('\r\n')).toBe(true);
    const cells = parseCsvCells(record.slice(0, -2));
    expect(cells).not.toEqual(expect.any(String));
    const values = cells as Array<{ value: string; quoted: boolean }>;
    expect(values.slice(0, 6)).toEqual([
      { value: 'a2', quoted: true },
      { value: '1000', quoted: false },
      { value: 'admin.key.update', quoted: true },
      { value: 'multi\nline\r\nid', quoted: true },
      { value: 'k,"1"', quoted: true },
      { value: '', quoted: true },
    ]);
    expect(JSON.parse(values[6].value)).toEqual(rows[1].payload);
  });

  it.each(['jsonl', 'csv'] as const)('verifies an intact %s export streamed in small chunks', async (format) => {
    const result = await verifyExport(chunked(exportOf(format)), format);
    const chain = new HashChain();
    rows.forEach((r) => chain.link(r));
    expect(result).toEqual({ ok: true, rows: 3, lastHash: chain.lastHash });
  });

  it('verifies an empty export', async () => {
    expect(await verifyExport(chunked(''), 'jsonl')).toMatchObject({ ok: true, rows: 0 });
    expect(await verifyExport(chunked(csvHeaderLine()), 'csv')).toMatchObject({ ok: true, rows: 0 });
    expect(await verifyExport(chunked(''), 'csv')).toMatchObject({ ok: false, row: 0 });
  });

  it('names the first broken row: changed value, removed row, swapped rows, bad header', async () => {
    const jsonl = exportOf('jsonl').split('\n');
    const changed = [...jsonl];
    changed[1] = changed[1].replace('"name"', '"enabled"');
    expect(await verifyExport(chunked(changed.join('\n')), 'jsonl')).toMatchObject({ ok: false, row: 2, line: 2, reason: expect.stringContaining('hash mismatch') });
    const removed = [jsonl[0], jsonl[2], ''];
    expect(await verifyExport(chunked(removed.join('\n')), 'jsonl')).toMatchObject({ ok: false, row: 2, reason: expect.stringContaining('prev_hash') });
    const extra = [jsonl[0].replace('"id":"a1"', '"id":"a1","x":1'), ...jsonl.slice(1)];
    expect(await verifyExport(chunked(extra.join('\n')), 'jsonl')).toMatchObject({ ok: false, row: 1, reason: 'unexpected field "x"' });

    const csv = exportOf('csv');
    // Row 2 spans three physical lines (its request_id holds raw line breaks): row 3 starts on line 6.
    const tampered = csv.replace('"proxy.blocked"', '"proxy.error"');
    expect(await verifyExport(chunked(tampered), 'csv')).toMatchObject({ ok: false, row: 3, line: 6 });
    expect(await verifyExport(chunked(csv.replace('request_id', 'request')), 'csv')).toMatchObject({ ok: false, row: 0, line: 1 });
    expect(await verifyExport(chunked(csv.replace('"k,""1"""', '"k,""1"" ')), 'csv')).toMatchObject({ ok: false, row: 2 });
  });

  it('tells null from an empty string in CSV', async () => {
    const csv = exportOf('csv');
    // tenant_id of row 2 is "" (quoted); an empty unquoted cell would mean null and break the hash.
    const nulled = csv.replace('"k,""1""",""', '"k,""1""",');
    expect(nulled).not.toBe(csv);
    expect(await verifyExport(chunked(nulled), 'csv')).toMatchObject({ ok: false, row: 2, reason: expect.stringContaining('hash mismatch') });
  });

  describe('CSV cells a spreadsheet would evaluate (OWASP CSV injection)', () => {
    const hostile: AuditRowView[] = [
      { id: '=1+1', ts: 3000, kind: '+cmd', request_id: '-2+3', key_id: '@SUM(A1)', tenant_id: '=HYPERLINK("http://evil.example","click")', payload: { note: '=HYPERLINK("http://evil.example")' } },
      { id: 'tab', ts: 3001, kind: '\tkind', request_id: '\rreq', key_id: "'=already", tenant_id: "'", payload: {} },
      { id: 'plain', ts: 3002, kind: 'proxy', request_id: 'a-b', key_id: 'k=1', tenant_id: 'x@y', payload: {} },
    ];
    const cellsOf = (row: AuditRowView) => parseCsvCells(exportLine('csv', row, new HashChain()).slice(0, -2)) as Array<{ value: string; quoted: boolean }>;

    it("prefixes ' to a cell starting with = + - @ tab or CR (and to one starting with ', so it reads back unchanged)", () => {
      expect(cellsOf(hostile[0]).slice(0, 6).map((c) => c.value)).toEqual([
        "'=1+1",
        '3000',
        "'+cmd",
        "'-2+3",
        "'@SUM(A1)",
        `'=HYPERLINK("http://evil.example","click")`,
      ]);
      expect(cellsOf(hostile[1]).slice(2, 6).map((c) => c.value)).toEqual(["'\tkind", "'\rreq", "''=already", "''"]);
      expect(cellsOf(hostile[2]).slice(0, 6).map((c) => c.value)).toEqual(['plain', '3002', 'proxy', 'a-b', 'k=1', 'x@y']);
      // The payload cell is JSON of an object: it starts with {, whatever its strings hold.
      expect(cellsOf(hostile[0])[6].value).toBe('{"note":"=HYPERLINK(\\"http://evil.example\\")"}');
      for (const row of hostile) {
        for (const cell of cellsOf(row)) expect(cell.value).not.toMatch(/^[=+\-@\t\r]/);
      }
    });

    it('hashes the values, not the cells: CSV and JSONL carry the same chain, and the verifier accepts both', async () => {
      const csv = exportOf('csv', hostile);
      const jsonl = exportOf('jsonl', hostile);
      const lines = jsonl.trimEnd().split('\n').map((l) => JSON.parse(l));
      // JSONL is data for programs: its values are the stored ones, unprefixed.
      expect(lines.map((l) => l.key_id)).toEqual(['@SUM(A1)', "'=already", 'k=1']);
      const last = lines.at(-1).hash;
      expect(await verifyExport(chunked(csv), 'csv')).toEqual({ ok: true, rows: 3, lastHash: last });
      expect(await verifyExport(chunked(jsonl), 'jsonl')).toEqual({ ok: true, rows: 3, lastHash: last });
      // A cell whose prefix was removed (the spreadsheet would now evaluate it) no longer verifies.
      expect(await verifyExport(chunked(csv.replace(`"'@SUM(A1)"`, '"@SUM(A1)"')), 'csv')).toMatchObject({ ok: false, row: 1, reason: expect.stringContaining('key_id is not written as the export writes it') });
      // Nor does one given a prefix it did not need, or a value changed under its prefix.
      expect(await verifyExport(chunked(csv.replace('"k=1"', `"'k=1"`)), 'csv')).toMatchObject({ ok: false, row: 3, reason: expect.stringContaining('key_id') });
      expect(await verifyExport(chunked(csv.replace(`"'@SUM(A1)"`, `"'@SUM(A2)"`)), 'csv')).toMatchObject({ ok: false, row: 1, reason: expect.stringContaining('hash mismatch') });
    });
  });
});
