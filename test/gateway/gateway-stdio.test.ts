import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Client as SdkClient } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import {
  BIN,
  childEnv,
  cleanup,
  EVERYTHING,
  type GatewayProcess,
  headlessOAuth,
  MCP_REMOTE,
  sdkClient,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

function gatehouse(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: childEnv(env), timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('gatehouse gateway -- <stdio server>', () => {
  let gateway: GatewayProcess;
  let dataDir: string;
  afterAll(cleanup);

  it('starts server-everything behind OAuth with an embedded authorization server and says how to log in', async () => {
    dataDir = await tempDir();
    gateway = await startGatewayProcess(['--', process.execPath, EVERYTHING], { dataDir });
    const mcpUrl = gateway.mcp['mcp']!;
    expect(mcpUrl).toBe(`${gateway.url}/mcp`);
    expect(gateway.stderr()).toContain(`gatehouse login ${mcpUrl}`);
    expect(gateway.password).toMatch(/^[A-Za-z0-9_-]{16}$/);
    // The embedded store lives in a private data directory; only the password's hash is kept.
    expect(statSync(join(dataDir, 'data')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'data', 'gateway-users.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'data', 'authorization-server.db')).isFile()).toBe(true);

    const anonymous = await fetch(mcpUrl, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain(
      `resource_metadata="${gateway.url}/.well-known/oauth-protected-resource/mcp"`,
    );
    const metadata = (await (await fetch(`${gateway.url}/.well-known/oauth-protected-resource/mcp`)).json()) as {
      authorization_servers: string[];
    };
    expect(metadata.authorization_servers).toEqual([gateway.url]);
  });

  it('lets a user log in with `gatehouse login` and call a tool with `gatehouse call`', async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    const env = { GATEHOUSE_STORE: await tempDir() };
    const login = await gatehouse(['login', mcpUrl, '--login', `admin:${gateway.password}`], env);
    expect(login.stderr + login.stdout).toContain('Logged in');
    const call = await gatehouse(['call', mcpUrl, 'echo', '{"message":"through the gateway"}'], env);
    expect(call.code).toBe(0);
    expect(call.stdout).toContain('Echo: through the gateway');
  }, 90_000);

  it('serves the SDK client and the Gatehouse Client', async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    const sdk = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    const { tools } = await sdk.listTools();
    expect(tools.map((t) => t.name)).toContain('get-sum');
    const sum = await sdk.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
    expect(JSON.stringify(sum.content)).toContain('5');

    await using client = await new Client(mcpUrl, {
      auth: headlessOAuth(mcpUrl, 'admin', gateway.password!),
    }).connect();
    const echo = await client.callTool('echo', { message: 'hello' });
    expect(echo.data).toBe('Echo: hello');
  });

  it('serves mcp-remote, which logs in through its own browser flow', async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MCP_REMOTE, mcpUrl],
      env: childEnv({ MCP_REMOTE_CONFIG_DIR: await tempDir(), BROWSER: 'false' }),
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr!.on('data', (d) => {
      stderr += d;
    });
    const client = new SdkClient({ name: 'via-mcp-remote', version: '1.0.0' });
    const connected = client.connect(transport);
    const [authorizationUrl] = await waitFor(() => stderr, /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/, 30_000);
    const redirectUri = new URL(authorizationUrl).searchParams.get('redirect_uri')!;
    const callback = await headlessAuthorize(new URL(authorizationUrl), redirectUri, {
      username: 'admin',
      password: gateway.password!,
    });
    expect((await fetch(callback)).status).toBe(200);
    await connected;
    try {
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'from mcp-remote' } });
      expect(JSON.stringify(echo.content)).toContain('Echo: from mcp-remote');
    } finally {
      await client.close();
    }
  }, 60_000);

  it('writes one audit line per MCP request, without tokens', async () => {
    const lines = gateway.logs().filter((l) => l['msg'] === 'mcp request');
    const call = lines.find((l) => l['tool'] === 'get-sum')!;
    expect(call).toMatchObject({ subject: 'admin', upstream: 'mcp', method: 'tools/call', outcome: 'ok' });
    expect(typeof call['clientId']).toBe('string');
    expect(typeof call['latencyMs']).toBe('number');
    expect(call['arguments']).toBeUndefined();
    expect(gateway.stdout()).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
    expect(gateway.stdout()).not.toContain(gateway.password!);
  });
});
