// MCP Inspector's CLI (npm @modelcontextprotocol/inspector, a dev dependency: docs/decisions/0003) against the
// gateway: its own OAuth (dynamic registration, PKCE, the loopback callback), its stored token on later runs, and a
// bearer header; then what it can do against server-everything over stdio and HTTP and server-filesystem. And its web
// UI in Chromium, logging in through the gateway's pages. It needs Node 22 (test/helpers/node22.mjs).
import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { launchChromium } from '../helpers/chromium.js';
import { node22 } from '../helpers/node22.mjs';
import { argumentsFor, type ToolSchema } from './everything-tools.js';
import {
  childEnv,
  cleanup,
  freePort,
  type GatewayProcess,
  gatewayForClientMatrix,
  headlessOAuth,
  ROOT,
  sdkClient,
  spawnTracked,
  tempDir,
  waitFor,
} from './helpers.js';

const INSPECTOR = join(ROOT, 'node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as JSON (`--format json`). */
  json: { result?: Record<string, unknown>; error?: unknown } & Record<string, unknown>;
}

/** The Inspector's own state (OAuth tokens, its registration) lives in `home`, secrets in a file there. */
function inspectorEnv(home: string, extra: Record<string, string> = {}) {
  return childEnv({ HOME: home, MCP_INSPECTOR_SECRET_STORE: 'file', BROWSER: 'true', ...extra });
}

function parse(stdout: string) {
  try {
    return JSON.parse(stdout);
  } catch {
    return {};
  }
}

/** One non-interactive Inspector CLI run (`--cli URL ARGS --format json`). */
function inspector(home: string, url: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      node22(),
      [INSPECTOR, '--cli', url, '--format', 'json', ...args],
      { env: inspectorEnv(home), timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? Number((error as { code?: unknown }).code ?? 1) : 0,
          stdout,
          stderr,
          json: parse(stdout),
        }),
    );
  });
}

/**
 * An Inspector CLI run that logs in by its own OAuth flow: it registers, prints the authorization URL ("Please
 * navigate to"), and waits on its loopback callback; the URL is followed headlessly as `admin`.
 */
async function inspectorWithLogin(home: string, url: string, password: string, args: string[]) {
  const callbackPort = await freePort();
  const child = spawn(
    node22(),
    [
      INSPECTOR,
      '--cli',
      url,
      '--format',
      'json',
      '--callback-url',
      `http://127.0.0.1:${callbackPort}/oauth/callback`,
      ...args,
    ],
    // Without a TTY the CLI refuses an interactive login unless told it may "open a browser" (BROWSER=true: a no-op).
    { env: inspectorEnv(home, { MCP_AUTO_OPEN_ENABLED: 'true' }), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  try {
    const [, authorization] = await waitFor(() => stderr, /navigate to: (\S+)/, 60_000);
    const authorizationUrl = new URL(authorization!);
    const redirectUri = authorizationUrl.searchParams.get('redirect_uri')!;
    const callback = await headlessAuthorize(authorizationUrl, redirectUri, { username: 'admin', password });
    expect((await fetch(callback)).status).toBe(200);
    const code = await exited;
    return { code, stdout, stderr, json: parse(stdout), authorizationUrl };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** Tools that ask the client for something (sampling, elicitation, roots): the CLI declares none of it. */
const NEEDS_CLIENT = /sampling|elicitation|roots/;

describe('gatehouse gateway × MCP Inspector, CLI and web UI', () => {
  let gateway: GatewayProcess;
  let files: string;
  const homes: Record<string, string> = {};
  afterAll(cleanup);

  beforeAll(async () => {
    node22(); // fetched once, before the timed parts
    // One stdio process per user: each CLI run is an MCP session of its own, and with a process per session the
    // runs would soon meet the cap on processes (they are idle until the session expires).
    ({ gateway, files } = await gatewayForClientMatrix('user'));
  }, 180_000);

  describe.each(['stdio', 'http', 'files'])('→ %s', (upstream) => {
    it('logs in by its own OAuth: dynamic registration, PKCE S256, resource indicator, loopback callback', async () => {
      homes[upstream] = await tempDir();
      const run = await inspectorWithLogin(homes[upstream], gateway.mcp[upstream]!, gateway.password!, [
        '--method',
        'tools/list',
      ]);
      expect(run.code, run.stderr).toBe(0);
      const params = run.authorizationUrl.searchParams;
      expect(run.authorizationUrl.origin).toBe(gateway.url);
      expect(params.get('code_challenge_method')).toBe('S256');
      expect(params.get('resource')).toBe(gateway.mcp[upstream]);
      expect(params.get('client_id')).toBeTruthy();
      const tools = (run.json.result?.['tools'] ?? []) as Array<{ name: string }>;
      expect(tools.length).toBeGreaterThan(0);
      // The token is kept for the next run, which needs no login.
      const again = await inspector(homes[upstream], gateway.mcp[upstream]!, [
        '--stored-auth-only',
        '--method',
        'tools/list',
      ]);
      expect(again.code, again.stderr).toBe(0);
      expect((again.json.result?.['tools'] as unknown[] | undefined)?.length).toBe(tools.length);
    }, 120_000);
  });

  describe.each(['stdio', 'http'])('→ %s server-everything', (upstream) => {
    const run = (args: string[]) =>
      inspector(homes[upstream]!, gateway.mcp[upstream]!, ['--stored-auth-only', ...args]);

    it('calls every tool it is offered', async () => {
      const listed = await run(['--method', 'tools/list']);
      const tools = listed.json.result?.['tools'] as Array<{
        name: string;
        inputSchema: ToolSchema;
        execution?: { taskSupport?: string };
      }>;
      const called: string[] = [];
      for (const tool of tools) {
        if (NEEDS_CLIENT.test(tool.name) || tool.execution?.taskSupport === 'required') continue;
        const args =
          tool.name === 'gzip-file-as-resource'
            ? { name: 'i.txt.gz', data: 'data:text/plain;base64,aW5zcGVjdG9y' }
            : tool.name === 'trigger-long-running-operation'
              ? { duration: 1, steps: 2 }
              : argumentsFor(tool.inputSchema);
        const result = await run([
          '--method',
          'tools/call',
          '--tool-name',
          tool.name,
          '--tool-args-json',
          JSON.stringify(args),
        ]);
        expect(result.code, `${tool.name}: ${result.stdout}${result.stderr}`).toBe(0);
        expect(result.json.result?.['isError'] ?? false, `${tool.name}: ${result.stdout}`).toBe(false);
        called.push(tool.name);
      }
      expect(called).toEqual(
        expect.arrayContaining([
          'echo',
          'get-sum',
          'get-structured-content',
          'get-tiny-image',
          'gzip-file-as-resource',
        ]),
      );
      expect(called.length).toBeGreaterThanOrEqual(10);
    }, 240_000);

    it('lists and reads resources and templates, lists and gets prompts, sets the log level', async () => {
      const resources = (await run(['--method', 'resources/list'])).json.result?.['resources'] as Array<{
        uri: string;
      }>;
      expect(resources.length).toBeGreaterThan(0);
      const read = await run(['--method', 'resources/read', '--uri', resources[0]!.uri]);
      expect(JSON.stringify(read.json.result)).toContain(resources[0]!.uri);
      const templates = await run(['--method', 'resources/templates/list']);
      expect(JSON.stringify(templates.json.result)).toContain('demo://resource/dynamic/text/{resourceId}');
      const prompts = await run(['--method', 'prompts/list']);
      expect(JSON.stringify(prompts.json.result)).toContain('args-prompt');
      const prompt = await run([
        '--method',
        'prompts/get',
        '--prompt-name',
        'args-prompt',
        '--prompt-args',
        'city=Lima',
      ]);
      expect(JSON.stringify(prompt.json.result)).toContain('Lima');
      const level = await run(['--method', 'logging/setLevel', '--log-level', 'debug']);
      expect(level.code, level.stdout + level.stderr).toBe(0);
    }, 120_000);
  });

  it('→ server-filesystem: reads, writes, lists', async () => {
    const run = (args: string[]) => inspector(homes['files']!, gateway.mcp['files']!, ['--stored-auth-only', ...args]);
    const read = await run([
      '--method',
      'tools/call',
      '--tool-name',
      'read_text_file',
      '--tool-arg',
      `path=${join(files, 'hello.txt')}`,
    ]);
    expect(JSON.stringify(read.json.result)).toContain('hello from the filesystem server');
    const write = await run([
      '--method',
      'tools/call',
      '--tool-name',
      'write_file',
      '--tool-args-json',
      JSON.stringify({ path: join(files, 'by-inspector.txt'), content: 'from the Inspector' }),
    ]);
    expect(write.json.result?.['isError'] ?? false, write.stdout).toBe(false);
    expect(await readFile(join(files, 'by-inspector.txt'), 'utf8')).toBe('from the Inspector');
    const list = await run(['--method', 'tools/call', '--tool-name', 'list_directory', '--tool-arg', `path=${files}`]);
    expect(JSON.stringify(list.json.result)).toContain('by-inspector.txt');
  }, 60_000);

  it('works with a bearer token in --header, and is refused with a token for another upstream', async () => {
    const mcpUrl = gateway.mcp['http']!;
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!);
    await sdkClient(mcpUrl, oauth);
    const token = (await oauth.tokens())!.access_token;
    const home = await tempDir();
    const ok = await inspector(home, mcpUrl, [
      '--header',
      `Authorization: Bearer ${token}`,
      '--method',
      'tools/call',
      '--tool-name',
      'echo',
      '--tool-arg',
      'message=with a header',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('Echo: with a header');
    // The audience check: that token is for the http upstream, not the stdio one.
    const refused = await inspector(home, gateway.mcp['stdio']!, [
      '--header',
      `Authorization: Bearer ${token}`,
      '--stored-auth-only',
      '--method',
      'tools/list',
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain('"tools"');
  }, 90_000);

  it("the Inspector's web UI logs in through the gateway's login and consent pages in Chromium, then calls a tool", async () => {
    const mcpUrl = gateway.mcp['stdio']!;
    const [clientPort, sandboxPort, appPort] = [await freePort(), await freePort(), await freePort()];
    const web = spawnTracked(node22(), [INSPECTOR, '--web', '--transport', 'http', '--server-url', mcpUrl], {
      HOME: await tempDir(),
      MCP_INSPECTOR_SECRET_STORE: 'file',
      MCP_AUTO_OPEN_ENABLED: 'false',
      CLIENT_PORT: String(clientPort),
      MCP_SANDBOX_PORT: String(sandboxPort),
      MCP_APP_ORIGIN_PORT: String(appPort),
    });
    let output = '';
    web.stdout!.on('data', (d) => {
      output += d;
    });
    web.stderr!.on('data', (d) => {
      output += d;
    });
    const [, inspectorUrl] = await waitFor(() => output, /running at:\s+(\S+)/, 60_000);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(inspectorUrl!);
      await page.getByRole('switch').click({ force: true });
      // The web UI sends the browser to the gateway's embedded AS: the login page, then consent.
      await page.waitForURL((url) => url.origin === gateway.url, { timeout: 30_000 });
      await page.fill('input[name=username]', 'admin');
      await page.fill('input[name=password]', gateway.password!);
      await page.click('button[type=submit]');
      await page.getByRole('button', { name: 'Approve' }).click();
      await page.waitForURL((url) => url.origin !== gateway.url, { timeout: 30_000 });
      await page.getByText('Connected', { exact: true }).waitFor({ timeout: 30_000 });
      await page.getByText('Tools', { exact: true }).first().click();
      await page.getByText('echo', { exact: true }).click();
      await page.getByLabel('message').first().fill('from the web UI');
      await page.getByRole('button', { name: 'Execute Tool' }).click();
      await page.getByText('Echo: from the web UI').first().waitFor({ timeout: 30_000 });
    } finally {
      await browser.close();
    }
    const call = gateway
      .logs()
      .find((l) => l['msg'] === 'mcp request' && l['tool'] === 'echo' && l['upstream'] === 'stdio');
    expect(call).toMatchObject({ subject: 'admin', outcome: 'ok' });
  }, 180_000);
});
