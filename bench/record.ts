import { execSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

/**
 * Saves a benchmark run: raw JSON under bench/results/ and a section in docs/benchmarks.md headed with
 * the date, commit and machine (`describe` writes the rest of the section from the machine line).
 */
export function recordRun(kind: string, data: object, describe: (machine: string) => string): void {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    /* not a git checkout */
  }
  const machine = `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const date = new Date().toISOString();
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${kind.toLowerCase()}-${date.replace(/[:.]/g, '-')}.json`, JSON.stringify({ date, commit, machine, ...data }, null, 2));
  appendFileSync('docs/benchmarks.md', `\n### ${kind}, ${date.slice(0, 10)}, commit ${commit}\n${describe(machine)}\n`);
}
