// Runs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned) against Gatehouse's `Client`
// (test/conformance/client.mjs): every client scenario the runner lists, auth and non-auth, at every spec version
// it lists for it, and each extension scenario at its own default. The scenario list comes from the runner itself
// (`conformance list`), so a scenario added by an upgrade is run and asserted, never skipped. A cell passes when no
// check fails or warns, the client exits cleanly — unless refusing is the scenario's point (REFUSALS) — and the
// client spoke the column's version: the runner's mock servers accept any version, so the driver asks the Client
// for the column's (`protocolVersion: '2025-06-18'`), and the version it reports is checked here. The suite's
// runner needs Node 22: it runs on a Node 22 that npm fetches on first use (test/helpers/node22.mjs); our client
// runs on the machine's Node.
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
const EXTENSION = 'extension';

/**
 * Scenarios whose point is that the client refuses (a forged issuer, a tampered skill file, a scope it may not
 * retry for): the client ends with an error, and the checks say whether it refused for the right reason.
 */
const REFUSALS: Record<string, string> = {
  'auth/iss-wrong-issuer': 'the authorization response names another issuer',
  'auth/iss-unexpected': 'the authorization response carries an issuer the server does not advertise',
  'auth/iss-supported-missing': 'the server promises an issuer parameter that the response lacks',
  'auth/iss-normalized': 'the issuer differs from the metadata (a trailing slash): compared exactly',
  'auth/metadata-issuer-mismatch': "the authorization server's metadata names another issuer",
  'auth/resource-mismatch': 'the protected-resource metadata names another resource',
  'auth/scope-retry-limit': 'the server keeps asking for more scope; the client stops retrying',
  'http-invalid-tool-headers': 'the server lists tools whose x-mcp-header annotations are invalid',
  'sep-2640-client-verify-digest': 'SKILL.md does not match the digest of its entry',
  'sep-2640-client-verify-size': 'SKILL.md does not match the size of its entry',
  'sep-2640-client-verify-frontmatter': "SKILL.md's frontmatter differs from its entry",
};

/**
 * Cells (`scenario@version`) that cannot pass, each with the reason; the test asserts that they still fail, so
 * this list shrinks when they are fixed. Empty: every cell passes.
 */
const EXPECTED_FAILURES: Record<string, string> = {};

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

/** The client scenarios the runner lists, each with its spec versions (`extension` for extensions). */
function listScenarios(): Array<{ name: string; versions: string[] }> {
  const text = execFileSync(node22, [runner, 'list'], { encoding: 'utf8', env: env({}) });
  const client = text.slice(text.indexOf('Client scenarios'), text.indexOf('Authorization server scenarios'));
  return [...client.matchAll(/^\s+- (\S+) \[([^\]]*)\]/gm)].map((m) => ({
    name: m[1]!,
    versions: m[2]!.split(',').map((v) => v.trim()),
  }));
}

const listed = listScenarios();
const versions = [...new Set(listed.flatMap((s) => s.versions))].filter((v) => v !== EXTENSION).sort();
const cells = [...versions, EXTENSION].map(
  (version) => [version, listed.filter((s) => s.versions.includes(version)).map((s) => s.name)] as const,
);

interface Check {
  id: string;
  status: string;
  description?: string;
  errorMessage?: string;
}
interface Outcome {
  checks: Check[];
  stdout: string;
  stderr: string;
}

/** The protocol version the client spoke, as the driver reports it; `undefined` if it stopped before agreeing one. */
const spokenVersion = (outcome: Outcome) => /^negotiated (\S+)$/m.exec(outcome.stdout)?.[1];
/** `scenario@version` → what the scenario recorded. */
const outcomes = new Map<string, Outcome>();
let log = '';
/** Cells run a second time, alone, after failing in the full matrix. */
const rerun = new Set<string>();

/** One runner invocation: a whole version's suite, or one extension scenario at its default version. */
async function runSuite(version: string, args: string[], srcDir: string, outDir: string): Promise<void> {
  // The driver speaks the version the runner passes; extension scenarios negotiate, as a user's program does.
  const speak: Record<string, string> = version === EXTENSION ? { GATEHOUSE_CONFORMANCE_PROTOCOL_VERSION: 'auto' } : {};
  const suite = [
    runner,
    'client',
    '--command',
    // Straight to Node (no npm in between): the runner starts every scenario's client at once.
    '"$GATEHOUSE_NODE" test/conformance/client.mjs',
    '--timeout',
    '120000',
    '-o',
    outDir,
    ...args,
  ];
  // At low priority the runner leaves the CPU to the tests running beside it.
  const [command, argv] = existsSync('/usr/bin/nice')
    ? ['/usr/bin/nice', ['-n', '15', node22, ...suite]]
    : [node22, suite];
  log += await new Promise<string>((resolve) => {
    const child = spawn(command, argv, { cwd: repo, env: env({ GATEHOUSE_SRC_DIR: srcDir, ...speak }), stdio: 'pipe' });
    let text = '';
    child.stdout.on('data', (c) => (text += c));
    child.stderr.on('data', (c) => (text += c));
    child.on('exit', () => resolve(text));
  });
  for (const file of await readdir(outDir, { recursive: true })) {
    if (!file.endsWith('checks.json')) continue;
    const dir = join(outDir, dirname(file));
    const scenario = dirname(file).replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
    const read = (name: string) => readFile(join(dir, name), 'utf8').catch(() => '');
    outcomes.set(`${scenario}@${version}`, {
      checks: JSON.parse(await read('checks.json')) as Check[],
      stdout: await read('stdout.txt'),
      stderr: await read('stderr.txt'),
    });
  }
}

/** What keeps a cell (`scenario` at `version`) from passing; empty when it passes. */
function problems(scenario: string, version: string, outcome: Outcome | undefined): string[] {
  if (!outcome) return ['no results: the scenario did not run'];
  const found = outcome.checks
    .filter((c) => c.status === 'FAILURE' || c.status === 'WARNING')
    .map((c) => `${c.id}: ${c.errorMessage ?? c.description ?? c.status}`);
  const clientError = /^\[gatehouse-conformance\] .*$/m.exec(outcome.stderr)?.[0];
  const refusal = scenario in REFUSALS;
  if (clientError && !refusal) found.push(`the client failed: ${clientError}`);
  // A refusal may come before any version is agreed (a login refused); whatever was agreed is the column's.
  const spoken = spokenVersion(outcome);
  if (version !== EXTENSION && spoken !== version && !(refusal && spoken === undefined)) {
    found.push(`the client spoke ${spoken ?? 'no version'}, not ${version}`);
  }
  return found;
}

const out = await temporaryDirectory('conformance');
afterAll(() => out.remove());

beforeAll(async () => {
  const src = await buildClientForChildren();
  const run = (version: string, args: string[], name: string) =>
    runSuite(version, args, src, join(out.path, name.replace(/\W+/g, '-')));
  // Two lanes, so the biggest suite runs beside the others rather than all at once: every suite starts all of its
  // clients together, and on a loaded machine a client starved for seconds finds its keep-alive socket closed.
  const [largest, ...rest] = [...cells].sort((a, b) => b[1].length - a[1].length);
  const lane = async (version: string, scenarios: readonly string[]) => {
    if (version !== EXTENSION) await run(version, ['--suite', 'all', '--spec-version', version], version);
    else await Promise.all(scenarios.map((s) => run(version, ['--scenario', s], `${version}-${s}`)));
  };
  await Promise.all([
    lane(...largest!),
    (async () => {
      for (const cell of rest) await lane(...cell);
    })(),
  ]);
  // Every suite starts all of its clients at once; on a machine loaded by other work a client starved for seconds
  // can find its keep-alive socket reset. A cell that fails is run once more on its own, and the matrix says so; a
  // real fault fails twice.
  const failed = cells.flatMap(([version, scenarios]) =>
    scenarios
      .filter((s) => problems(s, version, outcomes.get(`${s}@${version}`)).length > 0)
      .map((s) => [version, s] as const),
  );
  await Promise.all(
    failed.map(([version, scenario]) => {
      rerun.add(`${scenario}@${version}`);
      const args = ['--scenario', scenario, ...(version === EXTENSION ? [] : ['--spec-version', version])];
      return run(version, args, `rerun-${version}-${scenario}`);
    }),
  );
  const rows = listed.map(({ name }) => {
    const marks = cells.map(([version, scenarios]) => {
      const key = `${name}@${version}`;
      if (!scenarios.includes(name)) return '';
      const outcome = outcomes.get(key);
      if (problems(name, version, outcome).length > 0) return 'FAIL';
      // An extension cell says which version it negotiated; the others spoke their column's.
      const spoken = version === EXTENSION && outcome ? ` at ${spokenVersion(outcome) ?? 'no version'}` : '';
      return `pass${spoken}${rerun.has(key) ? ' (rerun)' : ''}`;
    });
    return `| ${name} | ${marks.join(' | ')} |`;
  });
  const header = `| scenario | ${cells.map(([v]) => v).join(' | ')} |\n|---|${cells.map(() => '---|').join('')}`;
  console.log(`Conformance matrix (Client):\n${header}\n${rows.join('\n')}`);
}, 900_000);

it('the runner lists client scenarios at several spec versions, and extensions', () => {
  expect(listed.length).toBeGreaterThan(30);
  expect(versions).toEqual(expect.arrayContaining(['2025-11-25', '2026-07-28']));
  expect(listed.some((s) => s.versions.includes(EXTENSION))).toBe(true);
});

for (const [version, scenarios] of cells) {
  describe(`conformance client scenarios at ${version}`, () => {
    for (const scenario of scenarios) {
      const key = `${scenario}@${version}`;
      const expected = EXPECTED_FAILURES[key];
      it(expected ? `${scenario} (expected to fail: ${expected})` : scenario, () => {
        const found = problems(scenario, version, outcomes.get(key));
        if (expected) expect(found, `${key} passes now: remove it from EXPECTED_FAILURES`).not.toEqual([]);
        else expect(found, log.slice(-4000)).toEqual([]);
      });
    }
  });
}
