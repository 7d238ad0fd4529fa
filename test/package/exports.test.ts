import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
const subpaths = Object.keys(pkg.exports).filter((key) => key !== './package.json');

/** Runs `code` as an ES module inside the package, so `gatehouse/...` resolves through package.json exports. */
function runModule(code: string, args: string[] = []): string {
  return execFileSync(process.execPath, [...args, '--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' });
}

describe('the built package', () => {
  it('exposes the documented subpaths', () => {
    for (const subpath of ['./client', './server', './authorization-server', './storage', './testing', './gateway']) {
      expect(subpaths).toContain(subpath);
    }
  });

  it.each(subpaths)('imports gatehouse%s from dist with named exports', (subpath) => {
    const specifier = `gatehouse${subpath.slice(1)}`;
    const out = runModule(`const m = await import(${JSON.stringify(specifier)}); console.log(Object.keys(m).length);`);
    expect(Number(out.trim())).toBeGreaterThan(0);
  });

  it.each(['client', 'gateway'])(
    'loads neither oidc-provider nor a database driver when importing gatehouse/%s',
    (part) => {
      const dir = mkdtempSync(join(tmpdir(), 'gatehouse-loads-'));
      const log = join(dir, 'loaded.txt');
      writeFileSync(log, '');
      const hooks = join(dir, 'hooks.mjs');
      writeFileSync(
        hooks,
        `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, result.url + '\\n');
  return result;
}`,
      );
      const register = join(dir, 'register.mjs');
      writeFileSync(
        register,
        `import { register } from 'node:module'; import { pathToFileURL } from 'node:url';
register(pathToFileURL(${JSON.stringify(hooks)}));`,
      );
      runModule(`await import('gatehouse/${part}');`, ['--import', register]);
      const loaded = readFileSync(log, 'utf8');
      expect(loaded).toContain(`/dist/${part}/index.js`);
      for (const heavy of ['oidc-provider', 'better-sqlite3', '/pg/', '@keyv/redis', '@keyv/postgres', '@redis/']) {
        expect(loaded).not.toContain(heavy);
      }
    },
  );
});
