import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { cleanup, EVERYTHING, type GatewayProcess, headlessOAuth, startGatewayProcess, tempDir } from './helpers.js';

describe('gatehouse gateway: scopes per upstream and per tool', () => {
  let gateway: GatewayProcess;
  let mcpUrl: string;
  afterAll(cleanup);
  beforeAll(async () => {
    const dir = await tempDir();
    const config = join(dir, 'gateway.json');
    await writeFile(
      config,
      JSON.stringify({
        logArguments: true,
        mcpServers: {
          everything: {
            command: process.execPath,
            args: [EVERYTHING],
            scopes: ['mcp:tools'],
            toolScopes: { 'get-sum': ['math'], 'get-env': ['admin'] },
          },
        },
      }),
    );
    gateway = await startGatewayProcess(['--config', config, '--store', 'memory'], { dataDir: dir });
    mcpUrl = gateway.mcp['everything']!;
  });

  it('lists only the tools the token may call, steps up on the 403 for one beyond it, then lists it', async () => {
    // No scopes given: the client asks for what the 401 challenge names (the upstream's `scopes`), nothing more.
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!);
    await using client = await new Client(mcpUrl, { auth: oauth }).connect();
    expect((await oauth.tokens())!.scope).toBe('mcp:tools');
    const before = (await client.listTools()).map((t) => t.name);
    expect(before).toContain('echo');
    expect(before).not.toContain('get-sum');
    expect(before).not.toContain('get-env');

    const sum = await client.callTool('get-sum', { a: 20, b: 22 });
    expect(JSON.stringify(sum.content)).toContain('42');
    expect((await oauth.tokens())!.scope?.split(' ').sort()).toEqual(['math', 'mcp:tools']);
    const after = (await client.listTools()).map((t) => t.name);
    expect(after).toContain('get-sum');
    expect(after).not.toContain('get-env');
  });

  it('answers a call beyond the token with one 403 insufficient_scope challenge naming every scope it needs', async () => {
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!, 'mcp:tools');
    await using client = await new Client(mcpUrl, { auth: oauth }).connect();
    await client.listTools();
    const token = (await oauth.tokens())!.access_token;
    const response = await fetch(mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'get-env', arguments: {} } }),
    });
    expect(response.status).toBe(403);
    const challenge = response.headers.get('www-authenticate')!;
    expect(challenge).toContain('error="insufficient_scope"');
    expect(challenge).toContain('scope="mcp:tools admin"');
  });

  it('puts tool arguments in the audit line when configured', () => {
    const line = gateway.logs().find((l) => l['msg'] === 'mcp request' && l['tool'] === 'get-sum');
    expect(line).toMatchObject({
      subject: 'admin',
      upstream: 'everything',
      outcome: 'ok',
      arguments: { a: 20, b: 22 },
    });
  });
});
