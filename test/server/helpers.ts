import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { McpHttpHandler } from '@modelcontextprotocol/server';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';

/** An MCP server whose tools report what they saw of the caller. */
export function whoamiMcp(register?: (server: McpServer) => void): McpHttpHandler {
  return createMcpHandler(() => whoamiServer(register));
}

/** The server of {@link whoamiMcp}, for wiring it to a transport of one's own. */
export function whoamiServer(register?: (server: McpServer) => void): McpServer {
  {
    const server = new McpServer({ name: 'test-server', version: '1.0.0' });
    const whoami = async (ctx: {
      http?: {
        authInfo?: {
          extra?: Record<string, unknown>;
          scopes: string[];
          clientId: string;
          resource?: URL;
          resourceMetadataUrl?: string;
        };
      };
    }) => {
      const authInfo = ctx.http?.authInfo;
      const identity = {
        subject: (authInfo?.extra?.['subject'] as string | undefined) ?? null,
        scopes: authInfo?.scopes ?? [],
        clientId: authInfo?.clientId ?? null,
        resource: authInfo?.resource?.href ?? null,
        resourceMetadataUrl: authInfo?.resourceMetadataUrl ?? null,
      };
      return { content: [{ type: 'text' as const, text: JSON.stringify(identity) }], structuredContent: identity };
    };
    server.registerTool('whoami', { description: 'Who is calling' }, whoami);
    server.registerTool('admin_task', { description: 'Needs admin' }, whoami);
    server.registerTool(
      'echo',
      { description: 'Echoes', inputSchema: z.object({ text: z.string() }) },
      async ({ text }) => ({ content: [{ type: 'text' as const, text }] }),
    );
    register?.(server);
    return server;
  }
}

/** A raw JSON-RPC POST, as a client would send it. */
export function rpc(url: string, method: string, params: unknown, token?: string): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
}

/** A `tools/list` POST with the given Authorization and, for DPoP, proof headers. */
export function sendToolsList(url: string, authorization: string, proof?: string): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization,
      ...(proof ? { dpop: proof } : {}),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
}

/** Calls a tool with the SDK client, sending `token` as a static bearer header. */
export async function callTool(
  url: string,
  token: string,
  name: string,
  args: Record<string, unknown> = {},
): Promise<{ structuredContent?: unknown; content: Array<{ type: string; text?: string }>; isError?: boolean }> {
  const client = new Client({ name: 'test-client', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
  );
  try {
    return (await client.callTool({ name, arguments: args })) as never;
  } finally {
    await client.close();
  }
}
