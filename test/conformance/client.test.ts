// Runs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned) against our client
// (test/conformance/client.mjs, started through `npm run -s conformance-client --`), at the default spec version
// and at 2026-07-28, and turns every auth/* scenario into a test (no expected failures). Other client scenarios
// (initialize, tools_call, ...) belong to the Client API and are not asserted here. The suite's runner needs Node 22: it runs on
// a Node 22 that npm fetches on first use (test/helpers/node22.mjs); our client runs on the machine's Node.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildClientForChildren, temporaryDirectory } from '../client/oauth-helpers.js';
import { node22 as fetchNode22 } from '../helpers/node22.mjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const node22 = fetchNode22();
const runner = join(repo, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');

/** The machine's Node, not the node@22 devDependency that npm puts first on PATH. */
function machineNode(): string {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir.includes('node_modules')) continue;
    const candidate = join(dir, process.platform === 'win32' ? 'node.exe' : 'node');
    if (existsSync(candidate)) return candidate;
  }
  return process.execPath;
}

const env = (extra: Record<string, string>) => ({
  ...process.env,
  PATH: (process.env['PATH'] ?? '')
    .split(delimiter)
    .filter((dir) => !dir.includes('node_modules'))
    .join(delimiter),
  GATEHOUSE_NODE: machineNode(),
  FORCE_COLOR: '0',
  ...extra,
});

/** Scenario names the runner lists for client testing. */
function listScenarios(): string[] {
  const text = execFileSync(node22, [runner, 'list'], { encoding: 'utf8', env: env({}) });
  const client = text.slice(text.indexOf('Client scenarios'), text.indexOf('Authorization server scenarios'));
  return [...client.matchAll(/^\s+- (\S+) \[([^\]]*)\]/gm)].map((m) => `${m[1]}|${m[2]}`);
}

const listed = listScenarios();
const authScenarios = listed.filter((s) => s.startsWith('auth/')).map((s) => s.split('|')[0]!);
// Extensions are not applicable at a dated spec version; the default run covers them.
const authAt2026 = listed
  .filter((s) => s.startsWith('auth/') && /2026-07-28/.test(s.split('|')[1]!))
  .map((s) => s.split('|')[0]!);

interface Check {
  id: string;
  status: string;
  description?: string;
  errorMessage?: string;
}
type Results = Map<string, Check[]>;

async function runSuite(args: string[], srcDir: string, outDir: string): Promise<{ results: Results; log: string }> {
  const log = await new Promise<string>((resolve) => {
    const suite = [
      runner,
      'client',
      '--command',
      'npm run -s conformance-client --',
      '--timeout',
      '120000',
      '-o',
      outDir,
    ];
    // The runner starts every scenario at once; at low priority it leaves the CPU to the tests running beside it.
    const [command, argv] = existsSync('/usr/bin/nice')
      ? ['/usr/bin/nice', ['-n', '15', node22, ...suite, ...args]]
      : [node22, [...suite, ...args]];
    const child = spawn(command, argv, {
      cwd: repo,
      env: env({ GATEHOUSE_SRC_DIR: srcDir }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (c) => (text += c));
    child.stderr.on('data', (c) => (text += c));
    child.on('exit', () => resolve(text));
  });
  const results: Results = new Map();
  for (const file of await readdir(outDir, { recursive: true })) {
    if (!file.endsWith('checks.json')) continue;
    const scenario = dirname(file).replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
    results.set(scenario, JSON.parse(await readFile(join(outDir, file), 'utf8')) as Check[]);
  }
  return { results, log };
}

function failures(checks: Check[] | undefined): string[] {
  if (!checks) return ['no results: the scenario did not run'];
  return checks
    .filter((c) => c.status === 'FAILURE' || c.status === 'WARNING')
    .map((c) => `${c.id}: ${c.errorMessage ?? c.description ?? c.status}`);
}

const out = await temporaryDirectory('conformance');
afterAll(() => out.remove());

for (const [title, args, scenarios] of [
  ['client --suite all', ['--suite', 'all'], authScenarios],
  ['client --suite all --spec-version 2026-07-28', ['--suite', 'all', '--spec-version', '2026-07-28'], authAt2026],
] as const) {
  describe(`conformance ${title}`, () => {
    let run: { results: Results; log: string };
    beforeAll(async () => {
      const src = await buildClientForChildren();
      run = await runSuite([...args], src, join(out.path, title.replace(/\W+/g, '-')));
    }, 600_000);

    for (const scenario of scenarios) {
      it(scenario, () => {
        expect(failures(run.results.get(scenario)), run.log.slice(-4000)).toEqual([]);
      });
    }
  });
}
