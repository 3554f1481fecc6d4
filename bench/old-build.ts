/**
 * An earlier commit of this repository, built for `npm run bench` to measure beside the current one
 * (`BENCH_OLD_COMMIT`): its tree is exported with `git archive` into .cache/bench-old/<commit> and
 * installed from its own lock file and built there, once; later runs reuse the build.
 */
import { execFileSync, execSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { BenchSetupError } from './load-generator';

const REPO = path.resolve(__dirname, '../..');

export interface OldBuild {
  /** The short commit, for labels. */
  commit: string;
  /** Its compiled entry point. */
  main: string;
}

export function buildOldCommit(ref: string): OldBuild {
  let commit: string;
  try {
    commit = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: REPO, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    throw new BenchSetupError(`BENCH_OLD_COMMIT=${ref} is not a commit of this repository`);
  }
  const dir = path.join(REPO, '.cache', 'bench-old', commit);
  const main = path.join(dir, 'dist', 'src', 'main.js');
  if (!existsSync(main)) {
    process.stderr.write(`building ${commit.slice(0, 7)} in ${dir} (once)\n`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const env = { ...process.env };
    // As in .ci/run: native addons build against the installed Node headers instead of downloading them.
    if (!env.npm_config_nodedir && existsSync('/usr/include/node')) env.npm_config_nodedir = '/usr';
    execSync(`git archive ${commit} | tar -x -C '${dir}'`, { cwd: REPO, stdio: 'inherit' });
    execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: 'inherit', env });
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: dir, stdio: 'inherit', env });
  }
  return { commit: commit.slice(0, 7), main };
}
