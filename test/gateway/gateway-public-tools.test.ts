import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { OAuth, type OAuthEvent } from '../../src/client/oauth.js';
import { readGatewayConfig, resolveConfig } from '../../src/gateway/config.js';
import { cleanup, EVERYTHING, type GatewayProcess, startGatewayProcess, tempDir } from './helpers.js';

describe('gatehouse gateway: publicTools', () => {
  let gateway: GatewayProcess;
  let mcpUrl: string;
  afterAll(cleanup);
  beforeAll(async () => {
    const dir = await tempDir();
    const config = join(dir, 'gateway.json');
    await writeFile(
      config,
      JSON.stringify({
        mcpServers: {
          everything: { command: process.execPath, args: [EVERYTHING], scopes: ['mcp:tools'], publicTools: ['echo'] },
        },
      }),
    );
    gateway = await startGatewayProcess(['--config', config, '--store', 'memory'], { dataDir: dir });
    mcpUrl = gateway.mcp['everything']!;
  }, 120_000);

  it('lists and calls the public tool without signing in; a protected tool logs in and goes on in a new session', async () => {
    const events: OAuthEvent['type'][] = [];
    const oauth = new OAuth({
      mcpUrl,
      tokenStorage: 'memory',
      login: { username: 'admin', password: gateway.password! },
      onEvent: (e) => events.push(e.type),
    });
    await using client = new Client(mcpUrl, { auth: oauth });
    expect((await client.listTools()).map((t) => t.name)).toEqual(['echo']);
    expect(JSON.stringify((await client.callTool('echo', { message: 'hi' })).content)).toContain('hi');
    expect(events).not.toContain('authorization-redirect');
    // The 401 logs in; the anonymous session is not the user's, so the gateway answers 404 (as MCP says) and the
    // client starts a new session, signed in, for the same call.
    expect(JSON.stringify((await client.callTool('get-sum', { a: 20, b: 22 })).content)).toContain('42');
    expect(events.filter((e) => e === 'authorization-redirect')).toHaveLength(1);
    expect((await client.listTools()).map((t) => t.name)).toContain('get-sum');
    expect(JSON.stringify((await client.callTool('echo', { message: 'again' })).content)).toContain('again');
    expect(events.filter((e) => e === 'authorization-redirect')).toHaveLength(1);
  }, 120_000);

  it('refuses publicTools together with tokenExchange', async () => {
    const dir = await tempDir();
    const file = join(dir, 'gateway.json');
    const upstream = {
      command: 'x',
      publicTools: ['echo'],
      tokenExchange: { resource: 'https://api.example.com' },
    };
    await writeFile(file, JSON.stringify({ mcpServers: { x: upstream } }));
    expect(() => resolveConfig({ mcpServers: { x: upstream } }, {})).toThrow(/publicTools and tokenExchange/);
    await expect(readGatewayConfig(file)).resolves.toMatchObject({ mcpServers: { x: { publicTools: ['echo'] } } });
  });
});
