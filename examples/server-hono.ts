/**
 * An MCP server in Hono behind Gatehouse, with its tokens (JWT or opaque) checked by introspection (RFC 7662).
 *
 *   ISSUER=https://auth.example.com RESOURCE=https://mcp.example.com/mcp \
 *   CLIENT_ID=mcp-server CLIENT_SECRET=… npm run example -- examples/server-hono.ts
 */
import { serve } from '@hono/node-server';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { honoMiddleware, introspectionVerifier, protect } from 'gatehouse/server';
import { Hono } from 'hono';

const issuer = process.env['ISSUER'] ?? 'http://127.0.0.1:9000';
const resource = process.env['RESOURCE'] ?? 'http://127.0.0.1:3000/mcp';

const mcp = createMcpHandler(() => {
  const server = new McpServer({ name: 'notes', version: '1.0.0' });
  server.registerTool('whoami', { description: 'Who the server thinks you are' }, async (ctx) => ({
    content: [{ type: 'text', text: JSON.stringify(ctx.http?.authInfo?.scopes ?? []) }],
  }));
  return server;
});

const app = new Hono();
app.use(
  honoMiddleware(
    protect(mcp, {
      resource,
      authorizationServers: [issuer],
      verifier: introspectionVerifier({
        endpoint: `${issuer}/token/introspection`,
        clientId: process.env['CLIENT_ID'] ?? 'mcp-server',
        clientSecret: process.env['CLIENT_SECRET'] ?? '',
        issuer,
        cacheTtl: 30,
      }),
      requiredScopes: ['notes:read'],
      scopeHierarchy: { 'notes:admin': ['notes:read', 'notes:write'] },
      authorizationServerMetadata: true, // mirror for 2025-03-26 clients
    }),
  ),
);
app.get('/healthz', (c) => c.text('ok'));
serve({ fetch: app.fetch, port: Number(new URL(resource).port || 3000), hostname: '127.0.0.1' });
