import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The rooms of the code (docs/architecture.md), checked on every test run:
 * - the folders under src/ import each other without cycles. A folder is a node, except that a
 *   feature's `domain/` (the plain types its ports speak) and `storage/ports/` are nodes of their own:
 *   anyone may build on them, and they import no feature back;
 * - only storage/ talks to a database driver.
 */
const SRC = __dirname;
const DRIVERS = ['typeorm', 'mongoose', 'ioredis', 'better-sqlite3', 'pg', '@nestjs/typeorm', '@nestjs/mongoose', '@nestjs-modules/ioredis'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sources(full);
    return /\.ts$/.test(name) && !/\.spec\.ts$/.test(name) ? [full] : [];
  });
}

/** The node a file belongs to: its top-level folder, or `<folder>/domain`, or `storage/ports`; null for src/*.ts (the composition root). */
function nodeOf(file: string): string | null {
  const parts = path.relative(SRC, file).split(path.sep);
  if (parts.length === 1) return null;
  if (parts[1] === 'domain' || (parts[0] === 'storage' && parts[1] === 'ports')) return `${parts[0]}/${parts[1]}`;
  return parts[0];
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'|require\('([^']+)'\)/gm)].map((m) => m[1] ?? m[2] ?? m[3]);
}

function graph(): Map<string, Map<string, string>> {
  const edges = new Map<string, Map<string, string>>();
  for (const file of sources(SRC)) {
    const from = nodeOf(file);
    if (from === null) continue;
    for (const specifier of imports(file)) {
      if (!specifier.startsWith('.')) continue;
      const target = path.resolve(path.dirname(file), specifier);
      const to = nodeOf(target.endsWith('.ts') ? target : `${target}.ts`);
      if (to === null || to === from) continue;
      if (!edges.has(from)) edges.set(from, new Map());
      // One example import per edge, to name in a failure.
      if (!edges.get(from)!.has(to)) edges.get(from)!.set(to, `${path.relative(SRC, file)} -> ${specifier}`);
    }
  }
  return edges;
}

/** Every elementary cycle found by a depth-first walk, as its nodes in order. */
function cycles(edges: Map<string, Map<string, string>>): string[][] {
  const found: string[][] = [];
  const seen = new Set<string>();
  const walk = (node: string, stack: string[]) => {
    const at = stack.indexOf(node);
    if (at !== -1) {
      const cycle = stack.slice(at);
      const key = [...cycle].sort().join(',');
      if (!seen.has(key)) {
        seen.add(key);
        found.push([...cycle, node]);
      }
      return;
    }
    for (const next of edges.get(node)?.keys() ?? []) walk(next, [...stack, node]);
  };
  for (const node of edges.keys()) walk(node, []);
  return found;
}

describe('architecture', () => {
  it('has no import cycles between folders', () => {
    const edges = graph();
    const described = cycles(edges).map((cycle) => cycle.slice(1).map((to, i) => edges.get(cycle[i])!.get(to)).join('  |  '));
    expect(described).toEqual([]);
  });

  it('talks to database drivers only from storage/', () => {
    const offenders = sources(SRC)
      .filter((file) => nodeOf(file) !== 'storage')
      .flatMap((file) => imports(file).filter((s) => DRIVERS.includes(s)).map((s) => `${path.relative(SRC, file)} imports ${s}`));
    expect(offenders).toEqual([]);
  });
});
