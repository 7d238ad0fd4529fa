import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, expect, it } from 'vitest';
import { headlessAuthorize } from '../../src/client/index.js';
import { SERVE_USER, type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { freePort } from '../stores/services.js';

// The README's "Protect an MCP server" and "Call it as a client" snippets, as written, against its
// `gatehouse serve` line: only the ports change (free ones instead of 8000 and 9000). The client logs in as users
// do with `auth: 'oauth'`: the system opener (`xdg-open`, a script on PATH) records the URL, and "the user" below
// posts the login and consent forms.
const root = fileURLToPath(new URL('../../', import.meta.url));
const readme = await readFile(join(root, 'README.md'), 'utf8');

function snippet(heading: string): string {
  const match = new RegExp(`## ${heading}\\n\\n\`\`\`ts\\n([\\s\\S]*?)\`\`\`\\n`).exec(readme);
  if (!match) throw new Error(`README.md has no ts block under "## ${heading}"`);
  return match[1]!;
}

/** Transpiles a README snippet to an .mjs file under the repository, so `gatehouse/*` resolves to the package. */
async function write(dir: string, name: string, code: string): Promise<string> {
  const { outputText } = ts.transpileModule(code, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  const file = join(dir, name);
  await writeFile(file, outputText);
  return file;
}

function run(file: string, env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  return { child, output: () => output };
}

const dir = await mkdtemp(join(root, '.docs-check-readme-'));
const children: ChildProcess[] = [];
let as: ServeProcess | undefined;
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await as?.close();
  await rm(dir, { recursive: true, force: true });
});

it("the README's server and client snippets, put together, call whoami through a login", async () => {
  const mcpPort = await freePort();
  const resource = `http://127.0.0.1:${mcpPort}/mcp`;
  // The README's `gatehouse serve` line, on a free port.
  as = await startServeProcess(['--resource', `${resource}=mcp:tools`]);

  const serverCode = snippet('Protect an MCP server')
    .replaceAll('http://127.0.0.1:8000/mcp', resource)
    .replaceAll('http://127.0.0.1:9000', as.url)
    .replace('port: 8000', `port: ${mcpPort}`);
  const clientCode = snippet('Call it as a client').replaceAll('http://127.0.0.1:8000/mcp', resource);
  expect(serverCode).toContain(resource);
  expect(clientCode).toContain(resource);

  const bin = join(dir, 'bin');
  const opened = join(dir, 'opened.log');
  await mkdir(bin);
  await writeFile(join(bin, 'xdg-open'), '#!/bin/sh\nprintf "%s\\n" "$1" >> "$OPENED_LOG"\n');
  await chmod(join(bin, 'xdg-open'), 0o755);
  const env = {
    ...process.env,
    PATH: `${bin}:${process.env['PATH']}`,
    // A desktop session, where the opener shows a browser (without one the login would use the device flow).
    DISPLAY: ':0',
    OPENED_LOG: opened,
    GATEHOUSE_STORE: join(dir, 'store'),
    GATEHOUSE_KEYCHAIN: '0',
  };

  const server = run(await write(dir, 'server.mjs', serverCode), env);
  children.push(server.child);
  await expect
    .poll(() => fetch(resource, { method: 'POST' }).then((response) => response.status), {
      timeout: 15_000,
    })
    .toBe(401);

  const client = run(await write(dir, 'client.mjs', clientCode), env);
  children.push(client.child);
  const exited = new Promise<number | null>((resolve) => client.child.once('exit', resolve));
  const url = await expect
    .poll(async () => (await readFile(opened, 'utf8').catch(() => '')).split('\n')[0], { timeout: 20_000 })
    .toMatch(/^http/)
    .then(async () => new URL((await readFile(opened, 'utf8')).split('\n')[0]!));
  const callback = await headlessAuthorize(url, url.searchParams.get('redirect_uri')!, SERVE_USER);
  await (await fetch(callback)).text();

  expect(await exited, client.output()).toBe(0);
  expect(client.output()).toMatch(/^You are \S+/m);
  expect(client.output()).not.toContain('undefined');
}, 90_000);
