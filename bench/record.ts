import { execSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

const DOC = 'docs/benchmarks.md';
/** The heading of the runs, newest first. */
const RUNS_HEADING = '\n## Runs\n';

/**
 * Saves a benchmark run: raw JSON under bench/results/ and a section in docs/benchmarks.md headed with
 * the date, commit and machine (`describe` writes the rest of the section from the machine line), first
 * under the "Runs" heading (at the end of the file without one).
 */
export function recordRun(kind: string, data: object, describe: (machine: string) => string): void {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    if (execSync('git status --porcelain --untracked-files=no', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()) commit += ' (with uncommitted changes)';
  } catch {
    /* not a git checkout */
  }
  const machine = `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const date = new Date().toISOString();
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${kind.toLowerCase()}-${date.replace(/[:.]/g, '-')}.json`, JSON.stringify({ date, commit, machine, ...data }, null, 2));
  const section = `\n### ${kind}, ${date.slice(0, 16).replace('T', ' ')} UTC, commit ${commit}\n${describe(machine)}\n`;
  const doc = existsSync(DOC) ? readFileSync(DOC, 'utf8') : '# Benchmarks\n';
  const at = doc.indexOf(RUNS_HEADING);
  writeFileSync(DOC, at < 0 ? `${doc}${section}` : `${doc.slice(0, at + RUNS_HEADING.length)}${section}${doc.slice(at + RUNS_HEADING.length)}`);
}
