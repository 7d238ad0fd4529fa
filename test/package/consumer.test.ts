import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NEXT_STEPS } from '../../src/cli/demo-flow.js';

// The package as a consumer gets it: `npm pack`, installed into an empty project from the tarball (the registry
// serves its dependencies, from the local npm cache where it can), then used only through its public entry points.
const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
const subpaths = Object.keys(pkg.exports).filter((key) => key !== './package.json');
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const builtInSqlite = major > 23 || (major === 23 && minor >= 4) || (major === 22 && minor >= 13);

const project = mkdtempSync(join(tmpdir(), 'gatehouse-consumer-'));
const installed = join(project, 'node_modules', 'gatehouse');
let installLog = '';
afterAll(() => rmSync(project, { recursive: true, force: true }));

const run = (command: string, args: string[], env: Record<string, string> = {}) =>
  spawnSync(command, args, { cwd: project, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env } });

beforeAll(() => {
  expect(existsSync(join(root, 'dist', 'cli', 'main.js')), 'run `npm run build` first').toBe(true);
  // `npm test` has just built dist/; --ignore-scripts keeps pack from building it a second time.
  const tarball = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], {
    cwd: root,
    encoding: 'utf8',
  }).trim();
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // --foreground-scripts prints a "> package@version script" banner for every lifecycle script that runs.
  const install = run('npm', [
    'install',
    join(project, tarball),
    '--no-audit',
    '--no-fund',
    '--prefer-offline',
    '--foreground-scripts',
    '--loglevel=info',
  ]);
  installLog = `${install.stdout}\n${install.stderr}`;
  expect(install.status, installLog).toBe(0);
}, 300_000);

describe('the packed package in an empty project', () => {
  it('ships no install script and builds nothing: no better-sqlite3, no second Node', () => {
    const shipped = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      scripts?: Record<string, string>;
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    for (const hook of ['preinstall', 'install', 'postinstall']) expect(shipped.scripts?.[hook]).toBeUndefined();
    expect(shipped.optionalDependencies).toBeUndefined();
    expect(installLog).not.toMatch(/^> \S+@\S+ (preinstall|install|postinstall|prepare)/m);
    expect(installLog).not.toMatch(/node-gyp|prebuild-install/);
    expect(existsSync(join(project, 'node_modules', 'better-sqlite3'))).toBe(false);
    expect(existsSync(join(project, 'node_modules', 'node'))).toBe(false);
    expect(readdirSync(installed).sort()).toEqual(['LICENSE', 'README.md', 'bin', 'dist', 'package.json']);
  });

  it('ships source maps that carry their sources', () => {
    const maps = readdirSync(join(installed, 'dist'), { recursive: true, encoding: 'utf8' }).filter((f) =>
      f.endsWith('.map'),
    );
    expect(maps.length).toBeGreaterThan(0);
    for (const file of maps) {
      const map = JSON.parse(readFileSync(join(installed, 'dist', file), 'utf8')) as {
        sources: string[];
        sourcesContent?: string[];
      };
      expect(map.sourcesContent?.length, file).toBe(map.sources.length);
    }
  });

  it('imports every subpath from JavaScript', () => {
    const code = `for (const s of ${JSON.stringify(subpaths.map((s) => `gatehouse${s.slice(1)}`))}) {
      const m = await import(s); if (Object.keys(m).length === 0) throw new Error(s + ' exports nothing');
    } console.log('ok');`;
    const result = run(process.execPath, ['--input-type=module', '-e', code]);
    // The one warning left to libraries: oidc-provider's on Node 20 (the CLI drops it; a library must not).
    expect(result.stderr.replace(/^oidc-provider WARNING: Unsupported runtime\..*\n/, '')).toBe('');
    expect(result.stdout.trim()).toBe('ok');
  });

  it('type-checks every subpath from TypeScript with skipLibCheck false, strict and exactOptionalPropertyTypes', {
    timeout: 240_000,
  }, () => {
    const imports = subpaths.map((s, i) => `import * as m${i} from 'gatehouse${s.slice(1)}';`);
    writeFileSync(
      join(project, 'index.ts'),
      `${imports.join('\n')}\nexport const all = [${subpaths.map((_, i) => `m${i}`)}];\n`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023', 'DOM'],
          strict: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: false,
          noEmit: true,
          // The consumer's own @types/node (here the repository's); nothing else from outside the project.
          typeRoots: [join(root, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['index.ts'],
      }),
    );
    const tsc = run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.']);
    expect(`${tsc.stdout}${tsc.stderr}`).toBe('');
    expect(tsc.status).toBe(0);
  });

  it('runs `npx gatehouse demo`: the flow first, the next commands last', () => {
    const demo = run('npx', ['--no-install', 'gatehouse', 'demo']);
    expect(demo.status, demo.stderr).toBe(0);
    expect(demo.stderr).toBe('');
    expect(demo.stdout.split('\n')[0]).toMatch(/^1\. Authorization server \(oidc-provider\) on http:\/\/127\.0\.0\.1:/);
    expect(demo.stdout.trimEnd().endsWith(NEXT_STEPS.join('\n').trimEnd())).toBe(true);
  });

  it(`runs \`gatehouse serve\`: ${builtInSqlite ? 'SQLite built in' : 'SQLite names its fix'}; metadata served`, async () => {
    const bin = join(project, 'node_modules', '.bin', 'gatehouse');
    const env = { GATEHOUSE_SUPERUSER_PASSWORD: 'correct horse battery staple', GATEHOUSE_DATA_DIR: project };
    const args = ['serve', '--port', '0', '--json', '--superuser', 'admin', '--resource', 'http://127.0.0.1:1/mcp'];
    if (!builtInSqlite) {
      // The default store is SQLite; on Node 20 without better-sqlite3 it says how to get it.
      const failed = run(bin, args, env);
      expect(failed.status).toBe(1);
      expect(failed.stderr).toContain('npm install better-sqlite3');
      expect(failed.stderr).toContain('Node >= 22.13');
    }
    const child = spawn(bin, [...args, ...(builtInSqlite ? [] : ['--store', 'memory'])], {
      cwd: project,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const issuer = await listening(child);
      const response = await fetch(new URL('/.well-known/oauth-authorization-server', issuer));
      expect(response.status).toBe(200);
      const metadata = (await response.json()) as { issuer: string; code_challenge_methods_supported: string[] };
      expect(metadata.issuer).toBe(issuer);
      expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
    } finally {
      child.kill('SIGTERM');
    }
  });
});

/** The issuer from `serve --json`'s "listening" line. */
function listening(child: ChildProcess): Promise<string> {
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gatehouse serve did not listen within 30 s:\n${output}`)), 30_000);
    child.once('exit', (code) => reject(new Error(`gatehouse serve exited with ${code}:\n${output}`)));
    child.stderr?.on('data', (chunk) => (output += chunk));
    child.stdout?.on('data', (chunk) => {
      output += chunk;
      const line = output.split('\n').find((l) => l.includes('"msg":"listening"'));
      if (!line) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { issuer: string }).issuer);
    });
  });
}
