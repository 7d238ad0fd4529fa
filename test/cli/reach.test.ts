import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/cli/store-option.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { cli, proxyClient, startOpenServer, tempStore } from './helpers.js';

const EVERYTHING = fileURLToPath(
  new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url),
);
/** `-- node server-everything stdio`: the server from npm, started by the CLI itself. */
const STDIO = ['--', process.execPath, EVERYTHING, 'stdio'];
const OTHER_RESOURCE = 'http://127.0.0.1:8399/api';
const PASSWORD = 'a-distinctive-password-4711';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const claims = (jwt: string) =>
  JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

describe("the CLI's reach (what mcp-remote and MCP Inspector users rely on)", () => {
  let stack: DemoStack;
  let store: Awaited<ReturnType<typeof tempStore>>;
  let open: Awaited<ReturnType<typeof startOpenServer>>;
  let headerServer: RunningServer & { mcpUrl: string; seen: Array<string | null> };
  let callbackPort: number;

  beforeAll(async () => {
    callbackPort = await freePort();
    stack = await startDemoStack({
      password: PASSWORD,
      extraResources: [OTHER_RESOURCE],
      clients: [
        {
          client_id: 'static-cli',
          token_endpoint_auth_method: 'none',
          application_type: 'native',
          redirect_uris: [`http://localhost:${callbackPort}/callback`],
          grant_types: ['authorization_code', 'refresh_token'],
        },
      ],
    });
    store = await tempStore();
    open = await startOpenServer();
    const seen: Array<string | null> = [];
    const mcp = createMcpHandler(() => new McpServer({ name: 'headers', version: '1.0.0' }));
    const running = await listen(
      toNodeListener((request) => {
        seen.push(request.headers.get('x-api-key'));
        return mcp.fetch(request);
      }),
    );
    headerServer = { ...running, mcpUrl: `${running.url}/mcp`, seen };
  });
  afterAll(async () => {
    await Promise.all([stack?.close(), store?.cleanup(), open?.close(), headerServer?.close()]);
  });

  it('runs a stdio server given after -- : tools, resources, read, prompts, prompt, ping (server-everything)', {
    timeout: 120_000,
  }, async () => {
    const env = { GATEHOUSE_STORE: store.dir };
    // Independent processes, run side by side.
    const [tools, sum, resources, prompts, prompt, missing, ping, down] = await Promise.all([
      cli(['tools', '--json', ...STDIO], env),
      cli(['call', 'get-sum', 'a=2', 'b=3', ...STDIO], env),
      cli(['resources', '--json', ...STDIO], env),
      cli(['prompts', ...STDIO], env),
      cli(['prompt', 'args-prompt', 'city=Oslo', ...STDIO], env),
      cli(['prompt', 'args-prompt', ...STDIO], env),
      cli(['ping', '--json', ...STDIO], env),
      cli(['ping', '--', process.execPath, '-e', 'process.exit(3)'], env),
    ]);
    expect(tools.status, tools.stderr).toBe(0);
    expect((JSON.parse(tools.stdout) as Array<{ name: string }>).map((t) => t.name)).toContain('get-sum');
    expect(sum.stdout).toContain('5');

    expect(resources.status, resources.stderr).toBe(0);
    const listed = JSON.parse(resources.stdout) as { resources: Array<{ uri: string }>; resourceTemplates: unknown[] };
    const uri = listed.resources.map((r) => r.uri).find((u) => u.endsWith('startup.md'))!;
    expect(uri).toBeTruthy();
    const read = await cli(['read', uri, ...STDIO], env);
    expect(read.status, read.stderr).toBe(0);
    expect(read.stdout).toMatch(/^# /);

    expect(prompts.stdout).toMatch(/^args-prompt\s+city\* state/m);
    expect(prompt.status, prompt.stderr).toBe(0);
    expect(prompt.stdout).toMatch(/^user: .*Oslo/m);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('fix:');

    expect(ping.status, ping.stderr).toBe(0);
    expect(JSON.parse(ping.stdout)).toMatchObject({ ok: true });
    expect(down.status).toBe(1);

    const usage = await cli(['read', ...STDIO], env);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('expected one resource URI');
  });

  it('--timeout ends a request the server does not answer in time, with the cause and a fix', {
    timeout: 60_000,
  }, async () => {
    const env = { GATEHOUSE_STORE: store.dir };
    const slow = ['call', 'trigger-long-running-operation', 'duration=30', 'steps=1'];
    const started = Date.now();
    const [timedOut, inTime] = await Promise.all([
      cli([...slow, '--timeout', '2', ...STDIO], env),
      cli(['call', 'trigger-long-running-operation', 'duration=1', 'steps=1', '--timeout', '20', ...STDIO], env),
    ]);
    // The tool would answer after 30 s (and the default timeout is 60 s): only --timeout 2 ends it this early.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(timedOut.status, timedOut.stderr).toBe(1);
    const [message, fix] = timedOut.stderr.trimEnd().split('\n').slice(-2);
    expect(message).toBe('gatehouse call: tools/call got no answer within 2000 ms');
    expect(fix).toBe('fix: the server may be slow or stuck: pass a larger --timeout SECONDS (default 60)');
    expect(inTime.status, inTime.stderr).toBe(0);
    expect(inTime.stdout).toMatch(/completed/i);
    const bad = await cli([...slow, '--timeout', '0', ...STDIO], env);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--timeout must be a positive number of seconds');
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} is what the CLI expands
  it('expands ${VAR} in --header, and says which variable is missing', { timeout: 60_000 }, async () => {
    const env = { GATEHOUSE_STORE: store.dir, GATEHOUSE_TEST_API_KEY: 'key-from-the-environment' };
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} is what the CLI expands
    const header = 'X-Api-Key: ${GATEHOUSE_TEST_API_KEY}';
    const ping = await cli(['ping', headerServer.mcpUrl, '--header', header], env);
    expect(ping.status, ping.stderr).toBe(0);
    expect(headerServer.seen).toContain('key-from-the-environment');
    const missing = header.replace('GATEHOUSE_TEST_API_KEY', 'NOT_SET_ANYWHERE_42');
    const unset = await cli(['ping', headerServer.mcpUrl, '--header', missing], env);
    expect(unset.status).toBe(2);
    expect(unset.stderr).toContain('the environment variable NOT_SET_ANYWHERE_42 is not set');
  });

  it('logs in with --resource, --client-info @file and --debug-log; the log has the flow and no secret', {
    timeout: 60_000,
  }, async () => {
    const login = `${stack.username}:${PASSWORD}`;
    const log = join(store.dir, 'debug.log');
    const info = join(store.dir, 'client.json');
    await writeFile(
      info,
      JSON.stringify({ client_id: 'static-cli', redirect_uris: [`http://localhost:${callbackPort}/callback`] }),
    );
    const env = { GATEHOUSE_STORE: store.dir };
    const result = await cli(
      [
        'login',
        stack.mcpUrl,
        '--login',
        login,
        '--resource',
        OTHER_RESOURCE,
        '--client-info',
        `@${info}`,
        '--debug-log',
        log,
        '--json',
      ],
      env,
    );
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ clientId: 'static-cli', subject: 'demo' });
    const token = JSON.parse((await cli(['token', stack.mcpUrl, '--json', '--debug-log', log], env)).stdout) as {
      access_token: string;
    };
    expect(claims(token.access_token)['aud']).toBe(OTHER_RESOURCE);
    expect(claims(token.access_token)['client_id']).toBe('static-cli');

    const written = await readFile(log, 'utf8');
    expect(written).toContain('gatehouse login');
    await writeFile(join('test-artifacts', 'cli-debug.log'), written).catch(() => {});
    expect(written).toMatch(/POST \S+\/token → 200/);
    expect(written).toContain(`resource=${encodeURIComponent(OTHER_RESOURCE)}`);
    const record = JSON.parse((await cli(['status', stack.mcpUrl, '--json'], env)).stdout) as object;
    expect(record).toMatchObject({ clientId: 'static-cli' });
    const stored = JSON.stringify(await openStore(store.dir).storage.read(stack.mcpUrl));
    const refresh = /"refresh_token":\s*"([^"]+)"/.exec(stored)?.[1];
    expect(refresh).toBeTruthy();
    for (const secret of [token.access_token, refresh, PASSWORD, encodeURIComponent(PASSWORD)]) {
      if (secret) expect(written).not.toContain(secret);
    }
    expect(written).not.toMatch(/[?&]code=(?!\[redacted\])/);
    expect(written).not.toMatch(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\./);
  });

  it('omits the resource parameter with --no-resource, and gives up a browser login after --login-timeout', {
    timeout: 60_000,
  }, async () => {
    const empty = await tempStore();
    try {
      const log = join(empty.dir, 'debug.log');
      const env = { GATEHOUSE_STORE: empty.dir };
      // The demo authorization server requires a resource (MCP profile), so the login fails — without one sent.
      const omitted = await cli(
        ['login', stack.mcpUrl, '--login', `demo:${PASSWORD}`, '--no-resource', '--debug-log', log],
        env,
      );
      expect(omitted.status).toBe(1);
      const written = await readFile(log, 'utf8');
      expect(written).toMatch(/GET \S+\/auth\?/);
      expect(written).not.toContain('resource=');

      const started = Date.now();
      const waited = await cli(['login', stack.mcpUrl, '--no-browser', '--login-timeout', '1'], env);
      expect(waited.status).toBe(1);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(waited.stderr).toMatch(/timed out|timeout/i);
      expect(JSON.parse((await cli(['status', '--json'], env)).stdout)).toEqual([]);
      const conflict = await cli(['login', stack.mcpUrl, '--resource', OTHER_RESOURCE, '--no-resource'], env);
      expect(conflict.status).toBe(2);
    } finally {
      await empty.cleanup();
    }
  });

  it('proxy hides and refuses tools with --ignore-tool / --allow-tool globs', { timeout: 60_000 }, async () => {
    const env = { GATEHOUSE_STORE: store.dir };
    const ignoring = proxyClient([open.mcpUrl, '--ignore-tool', 'fa*'], env);
    const allowing = proxyClient([open.mcpUrl, '--allow-tool', 'e?ho', '--allow-tool', 'nothing-*'], env);
    try {
      await Promise.all([ignoring.client.connect(ignoring.transport), allowing.client.connect(allowing.transport)]);
      for (const { client } of [ignoring, allowing]) {
        expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['echo']);
        const echo = await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
        expect(echo.content).toEqual([{ type: 'text', text: '{"text":"hi"}' }]);
        await expect(client.callTool({ name: 'fail', arguments: {} })).rejects.toThrow(/Unknown tool: fail/);
      }
    } finally {
      await Promise.allSettled([ignoring.client.close(), allowing.client.close()]);
    }
  });

  it('install writes each client its entry in its own file and shape, keeping the others', {
    timeout: 60_000,
  }, async () => {
    const home = join(store.dir, 'home');
    const env = { HOME: home, XDG_CONFIG_HOME: undefined, APPDATA: undefined };
    const files = {
      'claude-desktop': join(home, '.config', 'Claude', 'claude_desktop_config.json'),
      cursor: join(home, '.cursor', 'mcp.json'),
      vscode: join(home, '.config', 'Code', 'User', 'mcp.json'),
      'claude-code': join(home, '.claude.json'),
    };
    const keyOf = (client: string) => (client === 'vscode' ? 'servers' : 'mcpServers');
    for (const [client, file] of Object.entries(files)) {
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(
        file,
        JSON.stringify({ theme: 'dark', [keyOf(client)]: { existing: { command: 'existing-server' } } }),
      );
    }
    const url = 'https://mcp.example.com/mcp';
    for (const [client, file] of Object.entries(files)) {
      const result = await cli(['install', client, url, '--name', 'example', '--', '--scope', 'mcp:tools'], env);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toContain(`Added "example" in ${file}`);
      const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, Record<string, unknown>>;
      expect(config['theme']).toBe('dark');
      const servers = config[keyOf(client)]!;
      expect(servers['existing']).toEqual({ command: 'existing-server' });
      expect(servers['example']).toEqual({
        ...(client === 'vscode' || client === 'claude-code' ? { type: 'stdio' } : {}),
        command: 'npx',
        args: ['-y', 'gatehouse', 'proxy', url, '--scope', 'mcp:tools'],
      });
    }
    const again = await cli(['install', 'cursor', url, '--json'], env);
    expect(JSON.parse(again.stdout)).toMatchObject({ name: 'mcp.example.com', replaced: false });
    const replaced = await cli(['install', 'cursor', url, '--json'], env);
    expect(JSON.parse(replaced.stdout)).toMatchObject({ name: 'mcp.example.com', replaced: true });

    await writeFile(files.vscode, '{ // a comment\n "servers": {} }');
    const jsonc = await cli(['install', 'vscode', url], env);
    expect(jsonc.status).toBe(1);
    expect(jsonc.stderr).toContain('nothing was changed');
    expect(await readFile(files.vscode, 'utf8')).toBe('{ // a comment\n "servers": {} }');
    const typo = await cli(['install', 'cursr', url], env);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toContain('did you mean cursor?');
  });

  it('install writes the macOS and Windows files of each client', { timeout: 60_000 }, async () => {
    const url = 'https://mcp.example.com/mcp';
    const mac = join(store.dir, 'mac-home');
    const win = join(store.dir, 'win-profile');
    const appData = join(win, 'AppData', 'Roaming');
    const layouts = {
      darwin: {
        env: { HOME: mac, XDG_CONFIG_HOME: undefined, APPDATA: undefined },
        files: {
          'claude-desktop': join(mac, 'Library', 'Application Support', 'Claude', 'claude_desktop_config.json'),
          cursor: join(mac, '.cursor', 'mcp.json'),
          vscode: join(mac, 'Library', 'Application Support', 'Code', 'User', 'mcp.json'),
          'claude-code': join(mac, '.claude.json'),
        },
      },
      win32: {
        env: { HOME: undefined, USERPROFILE: win, APPDATA: appData, XDG_CONFIG_HOME: undefined },
        files: {
          'claude-desktop': join(appData, 'Claude', 'claude_desktop_config.json'),
          cursor: join(win, '.cursor', 'mcp.json'),
          vscode: join(appData, 'Code', 'User', 'mcp.json'),
          'claude-code': join(win, '.claude.json'),
        },
      },
    };
    for (const [platform, { env, files }] of Object.entries(layouts)) {
      for (const [client, file] of Object.entries(files)) {
        const result = await cli(['install', client, url, '--json'], { ...env, GATEHOUSE_INSTALL_PLATFORM: platform });
        expect(result.status, result.stderr).toBe(0);
        expect(JSON.parse(result.stdout)).toMatchObject({ file });
        const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, Record<string, unknown>>;
        expect(config[client === 'vscode' ? 'servers' : 'mcpServers']?.['mcp.example.com']).toMatchObject({
          command: 'npx',
          args: ['-y', 'gatehouse', 'proxy', url],
        });
      }
    }
    const wrong = await cli(['install', 'cursor', url], { GATEHOUSE_INSTALL_PLATFORM: 'beos' });
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toContain('GATEHOUSE_INSTALL_PLATFORM must be linux, darwin or win32');
  });
});
