import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { node22 } from '../helpers/node22.mjs';

// The machine's Node 20 runs the SQLite tests through better-sqlite3; this runs the same SQLite store and oidc
// adapter tests on Node 22, where the driver is the built-in node:sqlite.
const root = fileURLToPath(new URL('../..', import.meta.url));
const files = [
  'test/storage/sqlite-driver.test.ts',
  'test/storage/stores-local.test.ts',
  'test/storage/oidc-adapters.test.ts',
];

describe('SQLite on Node 22 (node:sqlite)', () => {
  it('passes the SQLite driver, store and oidc adapter tests', { timeout: 240_000 }, async () => {
    const node = node22();
    const args = ['node_modules/vitest/vitest.mjs', 'run', ...files, '-t', 'sqlite|SQLite', '--reporter', 'verbose'];
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      // Not CI's JSON reporter: the outer run counts this test once.
      const child = spawn(node, args, {
        cwd: root,
        env: { ...process.env, CI: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      child.on('close', (c) => resolve({ code: c, output }));
    });
    expect(code, output).toBe(0);
    expect(output).toContain('SQLite driver on Node 22.');
    expect(output).toContain('uses the built-in node:sqlite');
    expect(output).toContain('oidc-provider adapter contract: sqlite');
    expect(output).toMatch(/sqlite.*(get|set)/i);
    expect(output).not.toMatch(/ExperimentalWarning/);
  });
});
