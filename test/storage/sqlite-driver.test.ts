import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { StorageDependencyError, sqliteStore } from '../../src/storage/index.js';
import { sqliteDriverName } from '../../src/storage/sqlite-driver.js';
import { temporaryDirectory } from './helpers.js';

// This file also runs on Node 22 (test/storage/sqlite-node22.test.ts), so both drivers are exercised.
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const builtIn = major > 23 || (major === 23 && minor >= 4) || (major === 22 && minor >= 13);
const root = fileURLToPath(new URL('../..', import.meta.url));
const HIDE = join(root, 'test/fixtures/hide-packages/register.mjs');
const dir = await temporaryDirectory('sqlite-driver');
afterAll(() => dir.remove());

describe(`SQLite driver on Node ${process.versions.node}`, () => {
  it(`uses ${builtIn ? 'the built-in node:sqlite' : 'better-sqlite3'}`, async () => {
    expect(await sqliteDriverName()).toBe(builtIn ? 'node:sqlite' : 'better-sqlite3');
  });

  it('opens a file in WAL mode that another connection sees', async () => {
    const path = join(dir.path, 'wal.db');
    const a = sqliteStore(path);
    const b = sqliteStore(path);
    await a.set('k', { n: 1 });
    expect(await b.get('k')).toEqual({ n: 1 });
    await Promise.all([a.close?.(), b.close?.()]);
  });

  it('prints no warning while loading the driver', () => {
    const run = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { sqliteStore } = await import(${JSON.stringify(join(root, 'dist/storage/index.js'))});
         const s = sqliteStore(':memory:'); await s.set('k', 1); console.log(await s.get('k')); await s.close();`,
      ],
      { encoding: 'utf8' },
    );
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('1');
  });

  it(`without better-sqlite3 ${builtIn ? 'still works' : 'names both fixes'}`, () => {
    const script = `const { sqliteStore } = await import(${JSON.stringify(join(root, 'dist/storage/index.js'))});
      const s = sqliteStore(':memory:');
      try { await s.set('k', 1); console.log('ok', await s.get('k')); }
      catch (e) { console.log(e.name, e.code); console.log(e.message); console.log(e.hint); }`;
    const out = execFileSync(process.execPath, ['--import', HIDE, '--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, GATEHOUSE_TEST_HIDE_PACKAGES: 'better-sqlite3' },
    });
    if (builtIn) {
      expect(out.trim()).toBe('ok 1');
    } else {
      expect(out).toContain(`${StorageDependencyError.name} ERR_STORAGE_DEPENDENCY`);
      expect(out).toContain('needs Node >= 22.13 (built-in node:sqlite) or the package "better-sqlite3"');
      expect(out).toContain('npm install better-sqlite3 (or run on Node >= 22.13');
    }
  });
});
