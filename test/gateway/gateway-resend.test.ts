import { getRequestListener, type Http2Bindings, type HttpBindings } from '@hono/node-server';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../src/server/node.js';
import { cleanup, type GatewayProcess, headlessOAuth, sdkClient, startGatewayProcess } from './helpers.js';

/**
 * An HTTP MCP upstream that, once per method named in `dropOnce`, reads a request and closes the connection without
 * answering — an upstream dying mid-request. `ran` counts the `tools/call` requests it received (each one "ran").
 */
async function droppingUpstream(dropOnce: Set<string>) {
  let ran = 0;
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'dropping', version: '1.0.0' });
    server.registerTool('charge', { description: 'Not harmless to run twice.' }, async () => ({
      content: [{ type: 'text', text: `charged ${ran} time(s)` }],
    }));
    return server;
  });
  const listener = getRequestListener(async (request, env: HttpBindings | Http2Bindings) => {
    if (request.method === 'POST') {
      const body = await request.text();
      const { method } = JSON.parse(body) as { method?: string };
      if (method === 'tools/call') ran++;
      if (method && dropOnce.delete(method)) {
        env.incoming.socket.destroy();
        return new Response(null, { status: 500 }); // never written: the socket is gone
      }
      // The body was read: the MCP handler gets the same request with it again.
      return mcp.fetch(new Request(request.url, { method: 'POST', headers: request.headers, body }));
    }
    return mcp.fetch(request);
  });
  const running = await listen((req, res) => void listener(req, res));
  return { url: `${running.url}/mcp`, ran: () => ran, close: running.close };
}

describe('gatehouse gateway: a request an HTTP upstream dropped is sent again only when that is harmless', () => {
  const dropOnce = new Set(['tools/list', 'tools/call']);
  let upstream: Awaited<ReturnType<typeof droppingUpstream>>;
  let gateway: GatewayProcess;
  beforeAll(async () => {
    upstream = await droppingUpstream(dropOnce);
    gateway = await startGatewayProcess(['--upstream', upstream.url]);
  });
  afterAll(async () => {
    await cleanup();
    await upstream?.close();
  });

  it('sends a dropped tools/list again, and never a dropped tools/call', async () => {
    const mcpUrl = Object.values(gateway.mcp)[0]!;
    const client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));

    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['charge']);
    expect(dropOnce.has('tools/list')).toBe(false);

    const dropped = await client.callTool({ name: 'charge', arguments: {} }).then(
      (result) => JSON.stringify(result),
      (error: Error) => error.message,
    );
    expect(dropped).toMatch(/closed the connection before answering tools\/call; it may have run/);
    expect(upstream.ran()).toBe(1);

    const next = await client.callTool({ name: 'charge', arguments: {} });
    expect(JSON.stringify(next.content)).toContain('charged 2 time(s)');
  });
});
