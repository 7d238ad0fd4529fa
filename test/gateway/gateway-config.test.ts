import { realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanup,
  EVERYTHING,
  everythingOverHttp,
  FILESYSTEM,
  freePort,
  type GatewayProcess,
  headlessOAuth,
  sdkClient,
  startGatewayProcess,
  tempDir,
} from './helpers.js';

const EXCHANGED_RESOURCE = 'https://api.internal.example/mcp';

describe('gatehouse gateway --config: path, cwd, a variable in url, scopeHierarchy, tokenExchange for stdio, logLevel', () => {
  let gateway: GatewayProcess;
  let files: string;
  afterAll(cleanup);
  beforeAll(async () => {
    const httpPort = await freePort();
    await everythingOverHttp(httpPort);
    files = await realpath(await tempDir());
    await writeFile(join(files, 'hello.txt'), 'hello from cwd');
    const dir = await tempDir();
    const config = join(dir, 'gateway.json');
    await writeFile(
      config,
      JSON.stringify({
        logLevel: 'warn',
        mcpServers: {
          // "." is the process's working directory: `cwd` decides what server-filesystem may touch.
          files: { command: process.execPath, args: [FILESYSTEM, '.'], cwd: files, path: '/fs' },
          everything: {
            command: process.execPath,
            args: [EVERYTHING],
            scopes: ['mcp:tools'],
            toolScopes: { 'get-sum': ['math'] },
            scopeHierarchy: { admin: ['math'] },
          },
          // `${VAR}` in a URL expands from the gateway's environment.
          http: { url: `http://127.0.0.1:\${GATEWAY_CONFIG_HTTP_PORT}/mcp` },
          // A per-user stdio process gets a token of its own for this resource, in GATEHOUSE_UPSTREAM_TOKEN.
          exchanged: {
            command: process.execPath,
            args: [EVERYTHING],
            tokenExchange: { resource: EXCHANGED_RESOURCE, scopes: ['api:read'] },
          },
        },
      }),
    );
    gateway = await startGatewayProcess(['--config', config, '--store', 'memory'], {
      dataDir: dir,
      env: { GATEWAY_CONFIG_HTTP_PORT: String(httpPort) },
    });
  });

  it('serves an upstream at its `path`, and starts a stdio upstream in its `cwd`', async () => {
    expect(gateway.mcp['files']).toBe(`${gateway.url}/fs`);
    const mcpUrl = gateway.mcp['files']!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    const allowed = await client.callTool({ name: 'list_allowed_directories', arguments: {} });
    expect(JSON.stringify(allowed.content)).toContain(files);
    const read = await client.callTool({ name: 'read_text_file', arguments: { path: 'hello.txt' } });
    expect(JSON.stringify(read.content)).toContain('hello from cwd');
  });

  it('expands a variable in an upstream `url`', async () => {
    const mcpUrl = gateway.mcp['http']!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'expanded' } });
    expect(JSON.stringify(echo.content)).toContain('Echo: expanded');
  });

  it('lets a scope imply a tool scope (`scopeHierarchy`): listed and callable with the implying scope only', async () => {
    const mcpUrl = gateway.mcp['everything']!;
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!, 'mcp:tools admin');
    const client = await sdkClient(mcpUrl, oauth);
    expect((await oauth.tokens())!.scope?.split(' ').sort()).toEqual(['admin', 'mcp:tools']);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('get-sum');
    const sum = await client.callTool({ name: 'get-sum', arguments: { a: 20, b: 22 } });
    expect(JSON.stringify(sum.content)).toContain('42');
  });

  it("gives a stdio process with `tokenExchange` an exchanged token in GATEHOUSE_UPSTREAM_TOKEN, never the caller's", async () => {
    const mcpUrl = gateway.mcp['exchanged']!;
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!);
    const client = await sdkClient(mcpUrl, oauth);
    const result = await client.callTool({ name: 'get-env', arguments: {} });
    const env = JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as Record<string, string>;
    const callerToken = (await oauth.tokens())!.access_token;
    expect(JSON.stringify(env)).not.toContain(callerToken);
    expect(decodeJwt(env['GATEHOUSE_UPSTREAM_TOKEN']!)).toMatchObject({
      aud: EXCHANGED_RESOURCE,
      sub: 'admin',
      scope: 'api:read',
      client_id: 'gatehouse-gateway',
    });
  });

  it('takes the top-level `logLevel`: at warn, no audit lines', async () => {
    const mcpUrl = gateway.mcp['everything']!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    await client.callTool({ name: 'echo', arguments: { message: 'unaudited' } });
    await new Promise((r) => setTimeout(r, 200));
    expect(gateway.stdout()).not.toContain('"msg":"mcp request"');
  });
});
