import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const examples = readdirSync(join(root, 'examples')).filter((name) => name.endsWith('.ts'));

it('example headers name a command that works here: `npm run example`, not tsx (not installed)', () => {
  expect(examples.length).toBeGreaterThan(0);
  for (const name of examples) {
    const header = readFileSync(join(root, 'examples', name), 'utf8');
    expect(header, name).not.toMatch(/\btsx\b/);
    expect(header, name).toContain(`npm run example -- examples/${name}`);
  }
});

it('`npm run example -- examples/server-fetch.ts` runs the example on this Node', async () => {
  const { stdout } = await run('npm', ['run', '-s', 'example', '--', 'examples/server-fetch.ts'], { cwd: root });
  expect(stdout).toMatch(/^401 Bearer scope="mcp:tools"/m);
  expect(stdout).toContain('Hello, alice');
  expect(readdirSync(join(root, 'examples')).filter((name) => name.startsWith('.run-'))).toEqual([]);
}, 60_000);
