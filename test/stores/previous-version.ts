// The previous release of Gatehouse, built from git for rolling-upgrade tests: CI has no prebuilt copy, so it is
// extracted with `git archive`, given this checkout's node_modules and compiled once per test file. `--noCheck`: that
// commit was type-checked when it was made; emitting its JavaScript alone takes about a third of the time (~5–15 s).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The last commit writing store format level 2 (grace answers as entries of their own): the version a store is
 * upgraded from. Its `gatehouse serve` must keep working beside this one until `gatehouse admin store upgrade`.
 */
export const PREVIOUS_COMMIT = '9ecc4d02dfb4069482f0bf4f3f87a85c7343f2e2';

/** Builds {@link PREVIOUS_COMMIT}; resolves to its `bin/gatehouse.js` and a function removing the build. */
export async function buildPrevious(): Promise<{ bin: string; remove(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-previous-'));
  const archive = join(dir, 'source.tar');
  await run('git', ['-C', ROOT, 'archive', '--output', archive, PREVIOUS_COMMIT]);
  await run('tar', ['-x', '-f', archive, '-C', dir]);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  await run(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.build.json'), '--noCheck'],
    {
      cwd: dir,
      timeout: 60_000,
    },
  );
  return { bin: join(dir, 'bin/gatehouse.js'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
