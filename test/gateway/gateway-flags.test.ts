import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { listen } from '../../src/server/node.js';
import {
  BIN,
  childEnv,
  cleanup,
  EVERYTHING,
  everythingOverHttp,
  freePort,
  type GatewayProcess,
  headlessOAuth,
  sdkClient,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

const API_KEY = 'flag-header-key-0123456789';

/** A streamable-HTTP MCP server without auth that records the headers of every request it receives. */
async function recordingUpstream() {
  const seen: Array<Record<string, string>> = [];
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'recording', version: '1.0.0' });
    server.registerTool(
      'add',
      { description: 'Adds.', inputSchema: z.object({ a: z.number(), b: z.number() }) },
      async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
    );
    server.registerTool('refuse', { description: 'Answers with a tool error.' }, async () => ({
      isError: true,
      content: [{ type: 'text', text: 'refused' }],
    }));
    return server;
  });
  const listener = getRequestListener((request) => {
    seen.push(Object.fromEntries(request.headers.entries()));
    return mcp.fetch(request);
  });
  const running = await listen((req, res) => void listener(req, res));
  return { url: `${running.url}/mcp`, seen, close: running.close };
}

function auditLines(gateway: GatewayProcess) {
  return gateway.logs().filter((l) => l['msg'] === 'mcp request');
}

describe('gatehouse gateway --upstream URL --header --scope --log-arguments --public-url', () => {
  let gateway: GatewayProcess;
  let upstream: Awaited<ReturnType<typeof recordingUpstream>>;
  let publicUrl: string;
  beforeAll(async () => {
    upstream = await recordingUpstream();
    const port = await freePort();
    // Another spelling of this machine than the one the gateway listens at: what clients see must come from it.
    publicUrl = `http://localhost:${port}`;
    gateway = await startGatewayProcess(
      [
        '--port',
        String(port),
        '--public-url',
        publicUrl,
        '--upstream',
        upstream.url,
        '--header',
        `x-api-key=\${GATEWAY_FLAGS_KEY}`,
        '--scope',
        'math:add',
        '--log-arguments',
      ],
      { env: { GATEWAY_FLAGS_KEY: API_KEY } },
    );
  });
  afterAll(async () => {
    await cleanup();
    await upstream?.close();
  });

  it('derives the MCP URL, the resource and the issuer from --public-url', async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    expect(mcpUrl).toBe(`${publicUrl}/mcp`);
    const resource = (await (await fetch(`${publicUrl}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<
      string,
      unknown
    >;
    expect(resource).toMatchObject({ resource: mcpUrl, authorization_servers: [publicUrl] });
    const as = (await (await fetch(`${publicUrl}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      string
    >;
    expect(as['issuer']).toBe(publicUrl);
    expect(as['token_endpoint']).toBe(`${publicUrl}/token`);
  });

  it('names the --scope in the 401 challenge, and the token carries it', async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    const anonymous = await fetch(mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain('scope="math:add"');
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!);
    const client = await sdkClient(mcpUrl, oauth);
    await client.listTools();
    expect((await oauth.tokens())!.scope).toBe('math:add');
  });

  it("sends the --header (its variable expanded) to the upstream, never the caller's token", async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!);
    const client = await sdkClient(mcpUrl, oauth);
    const sum = await client.callTool({ name: 'add', arguments: { a: 20, b: 22 } });
    expect(sum.content).toEqual([{ type: 'text', text: '42' }]);
    const token = (await oauth.tokens())!.access_token;
    expect(upstream.seen.length).toBeGreaterThan(1);
    for (const headers of upstream.seen) {
      expect(headers['x-api-key']).toBe(API_KEY);
      expect(headers['authorization']).toBeUndefined();
      for (const value of Object.values(headers)) expect(value).not.toContain(token);
    }
  });

  it('audits with --log-arguments: arguments, and the outcomes ok, tool_error and error', async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    await client.callTool({ name: 'add', arguments: { a: 1, b: 2 } });
    expect((await client.callTool({ name: 'refuse', arguments: {} })).isError).toBe(true);
    await expect(client.getPrompt({ name: 'no-such-prompt' })).rejects.toThrow();
    await waitFor(() => JSON.stringify(auditLines(gateway)), /prompts\/get/);
    const lines = auditLines(gateway);
    expect(lines.find((l) => l['tool'] === 'add' && (l['arguments'] as { a?: number })?.a === 1)).toMatchObject({
      subject: 'admin',
      upstream: 'mcp',
      method: 'tools/call',
      arguments: { a: 1, b: 2 },
      outcome: 'ok',
    });
    // One line per request: the one call of `refuse` left one.
    const refused = lines.filter((l) => l['tool'] === 'refuse');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({
      outcome: 'tool_error',
      session: expect.any(String),
      latencyMs: expect.any(Number),
    });
    const failed = lines.find((l) => l['method'] === 'prompts/get')!;
    expect(failed).toMatchObject({ outcome: 'error', error: { code: expect.any(Number) } });
    expect(String((failed['error'] as { message: string }).message)).not.toBe('');
    expect(gateway.stdout()).not.toContain(API_KEY);
  });

  it('keeps an idle client connection for 65 s (longer than load balancers keep theirs)', async () => {
    const response = await fetch(`${publicUrl}/.well-known/oauth-protected-resource/mcp`);
    await response.text();
    expect(response.headers.get('keep-alive')).toBe('timeout=65');
  });
});

describe('gatehouse gateway --upstream URL --sse', () => {
  afterAll(cleanup);

  it('serves a 2024-11-05 SSE upstream; an upstream without scopes gets mcp:tools', async () => {
    const ssePort = await freePort();
    await everythingOverHttp(ssePort, 'sse');
    const gateway = await startGatewayProcess([
      '--store',
      'memory',
      '--upstream',
      `http://127.0.0.1:${ssePort}/sse`,
      '--sse',
    ]);
    const mcpUrl = gateway.mcp['mcp']!;
    expect(gateway.stderr()).toContain(`MCP server mcp (sse): ${mcpUrl}`);
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!);
    const client = await sdkClient(mcpUrl, oauth);
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'over --sse' } });
    expect(JSON.stringify(echo.content)).toContain('Echo: over --sse');
    // The embedded AS grants nothing for a resource without scopes: the upstream got mcp:tools there.
    expect((await oauth.tokens())!.scope).toBe('mcp:tools');
  }, 90_000);
});

/** Runs `gatehouse gateway ARGS` to its end (a start that is refused). */
function refusedStart(args: string[], dataDir: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, 'gateway', '--port', '0', '--store', 'memory', ...args],
      { env: childEnv({ GATEHOUSE_DATA_DIR: dataDir }), timeout: 30_000 },
      (error, _stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
    );
  });
}

describe('gatehouse gateway: starts it refuses', () => {
  afterAll(cleanup);

  it('stops the start on a variable in --env that is not set, naming it', async () => {
    const result = await refusedStart(['--env', `TOKEN=\${GATEWAY_FLAGS_UNSET}`, '--', 'true'], await tempDir());
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('GATEWAY_FLAGS_UNSET');
    expect(result.stderr).toMatch(/not set/);
  });

  it('refuses a flag the upstream would not use instead of ignoring it: --scope with --config, --header with a command', async () => {
    const dir = await tempDir();
    const config = join(dir, 'gateway.json');
    await writeFile(config, JSON.stringify({ mcpServers: { everything: { command: 'true' } } }));
    const cases: Array<[string[], RegExp]> = [
      [
        ['--config', config, '--scope', 'admin'],
        /--scope would be ignored here: in --config give each upstream its "scopes"/,
      ],
      [['--config', config, '--max-processes', '3'], /--max-processes would be ignored here/],
      [['--header', 'x-key=1', '--', 'true'], /--header would be ignored here/],
      [['--sse', '--', 'true'], /--sse would be ignored here/],
      [['--env', 'A=1', '--upstream', 'http://127.0.0.1:9/mcp'], /--env would be ignored here/],
    ];
    for (const [args, message] of cases) {
      const result = await refusedStart(args, dir);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});

describe('gatehouse gateway --host', () => {
  afterAll(cleanup);

  it('listens at that address only', async () => {
    const gateway = await startGatewayProcess([
      '--store',
      'memory',
      '--host',
      '127.0.0.2',
      '--',
      process.execPath,
      EVERYTHING,
    ]);
    const { port, hostname } = new URL(gateway.url);
    expect(hostname).toBe('127.0.0.2');
    expect((await fetch(`${gateway.url}/.well-known/oauth-protected-resource/mcp`)).status).toBe(200);
    await expect(fetch(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`)).rejects.toThrow();
  });
});
