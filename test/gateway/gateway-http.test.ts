import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import {
  cleanup,
  EVERYTHING,
  FILESYSTEM,
  freePort,
  type GatewayProcess,
  headlessOAuth,
  sdkClient,
  spawnTracked,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

const UPSTREAM_KEY = 'static-upstream-key-0123456789';

/** A protected HTTP MCP server that records every header it receives. */
async function recordingUpstream(issuer: string) {
  const seen: Array<Record<string, string>> = [];
  const running = await listen((req, res) => {
    seen.push(Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])));
    listener(req, res);
  });
  const resource = `${running.url}/mcp`;
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'recording', version: '1.0.0' });
    server.registerTool('whoami', { description: 'Who the upstream sees.' }, async (ctx) => {
      const info = ctx.http?.authInfo;
      const body = { subject: info?.extra?.['subject'], clientId: info?.clientId, scopes: info?.scopes };
      return { content: [{ type: 'text', text: JSON.stringify(body) }], structuredContent: body };
    });
    return server;
  });
  const listener = toNodeListener(
    protect(mcp, {
      resource,
      authorizationServers: [issuer],
      verifier: jwtVerifier({ issuer, jwksUri: `${issuer}/jwks`, audience: resource }),
    }),
  );
  return { resource, seen, close: running.close };
}

describe('gatehouse gateway --config: HTTP upstreams, several upstreams, no token passthrough', () => {
  let gateway: GatewayProcess;
  let upstream: Awaited<ReturnType<typeof recordingUpstream>>;
  let files: string;
  afterAll(async () => {
    await cleanup();
    await upstream?.close();
  });

  beforeAll(async () => {
    const port = await freePort();
    upstream = await recordingUpstream(`http://127.0.0.1:${port}`);
    const httpPort = await freePort();
    const ssePort = await freePort();
    const http = spawnTracked(process.execPath, [EVERYTHING, 'streamableHttp'], { PORT: String(httpPort) });
    const sse = spawnTracked(process.execPath, [EVERYTHING, 'sse'], { PORT: String(ssePort) });
    let logs = '';
    http.stderr!.on('data', (d) => {
      logs += d;
    });
    sse.stderr!.on('data', (d) => {
      logs += d;
    });
    await waitFor(() => logs, /listening on port/i);
    await waitFor(() => logs, /running on port/i);
    files = await tempDir();
    await writeFile(join(files, 'hello.txt'), 'hello from the filesystem server');
    const dir = await tempDir();
    const config = join(dir, 'gateway.json');
    await writeFile(
      config,
      JSON.stringify({
        mcpServers: {
          api: {
            url: upstream.resource,
            headers: { 'x-api-key': '${UPSTREAM_KEY}' },
            tokenExchange: { resource: upstream.resource, scopes: ['api:read'] },
          },
          everything: { url: `http://127.0.0.1:${httpPort}/mcp` },
          legacy: { url: `http://127.0.0.1:${ssePort}/sse`, type: 'sse' },
          files: { command: process.execPath, args: [FILESYSTEM, files] },
        },
      }),
    );
    gateway = await startGatewayProcess(['--config', config, '--port', String(port)], {
      env: { UPSTREAM_KEY },
      dataDir: dir,
    });
  });

  it('serves each upstream at /<name>/mcp', () => {
    expect(gateway.mcp).toEqual({
      api: `${gateway.url}/api/mcp`,
      everything: `${gateway.url}/everything/mcp`,
      legacy: `${gateway.url}/legacy/mcp`,
      files: `${gateway.url}/files/mcp`,
    });
  });

  it('never passes the caller token to an HTTP upstream; it gets its own headers and an exchanged token', async () => {
    const mcpUrl = gateway.mcp['api']!;
    const oauth = headlessOAuth(mcpUrl, 'admin', gateway.password!);
    const client = await sdkClient(mcpUrl, oauth);
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    expect(result.structuredContent).toMatchObject({
      subject: 'admin',
      clientId: 'gatehouse-gateway',
      scopes: ['api:read'],
    });
    const callerToken = (await oauth.tokens())!.access_token;
    expect(upstream.seen.length).toBeGreaterThan(1);
    for (const headers of upstream.seen) {
      for (const value of Object.values(headers)) expect(value).not.toContain(callerToken);
      expect(headers['x-api-key']).toBe(UPSTREAM_KEY);
      const token = headers['authorization']!.replace(/^Bearer /, '');
      expect(decodeJwt(token)).toMatchObject({ aud: upstream.resource, sub: 'admin', client_id: 'gatehouse-gateway' });
    }
  });

  it('passes streamable HTTP through, with streamed progress', async () => {
    const mcpUrl = gateway.mcp['everything']!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    const progress: number[] = [];
    const result = await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
      { onprogress: (p) => progress.push(p.progress) },
    );
    expect(JSON.stringify(result.content)).toContain('completed');
    expect(progress).toEqual([1, 2, 3]);
  });

  it('passes the SSE transport through', async () => {
    const mcpUrl = gateway.mcp['legacy']!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    const result = await client.callTool({ name: 'echo', arguments: { message: 'over sse' } });
    expect(JSON.stringify(result.content)).toContain('Echo: over sse');
  });

  it('serves server-filesystem from npm on a temp directory', async () => {
    const mcpUrl = gateway.mcp['files']!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    const read = await client.callTool({ name: 'read_text_file', arguments: { path: join(files, 'hello.txt') } });
    expect(JSON.stringify(read.content)).toContain('hello from the filesystem server');
    await client.callTool({ name: 'write_file', arguments: { path: join(files, 'new.txt'), content: 'written' } });
    const list = await client.callTool({ name: 'list_directory', arguments: { path: files } });
    expect(JSON.stringify(list.content)).toContain('new.txt');
  });

  it('refuses a token minted for one upstream at another', async () => {
    const oauth = headlessOAuth(gateway.mcp['api']!, 'admin', gateway.password!);
    await sdkClient(gateway.mcp['api']!, oauth);
    const token = (await oauth.tokens())!.access_token;
    const response = await fetch(gateway.mcp['everything']!, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('audience mismatch');
  });
});
