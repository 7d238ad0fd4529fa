/**
 * An MCP server in Express behind Gatehouse: JWT access tokens from your authorization server, a per-tool scope,
 * and a tool that calls another API on the user's behalf (token exchange).
 *
 *   ISSUER=https://auth.example.com RESOURCE=https://mcp.example.com/mcp \
 *   CLIENT_ID=mcp-server CLIENT_SECRET=… npm run example -- examples/server-express.ts
 */
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import express from 'express';
import { createAuthProvider, expressHandler } from 'gatehouse/server';
import { z } from 'zod';

const issuer = process.env['ISSUER'] ?? 'http://127.0.0.1:9000';
const resource = process.env['RESOURCE'] ?? 'http://127.0.0.1:3000/mcp';
const calendarApi = process.env['CALENDAR_API'] ?? 'https://calendar.example.com';

const auth = await createAuthProvider({
  issuer,
  resource,
  serverName: 'Calendar MCP server',
  requiredScopes: ['mcp:tools'],
  clientCredentials: {
    clientId: process.env['CLIENT_ID'] ?? 'mcp-server',
    clientSecret: process.env['CLIENT_SECRET'] ?? '',
  },
});

const mcp = createMcpHandler(() => {
  const server = new McpServer({ name: 'calendar', version: '1.0.0' });
  server.registerTool('whoami', { description: 'Who the server thinks you are' }, async (ctx) => ({
    content: [{ type: 'text', text: String(ctx.http?.authInfo?.extra?.['subject']) }],
  }));
  server.registerTool(
    'list_events',
    { description: 'Your next events', inputSchema: z.object({ days: z.number().int().min(1).max(30) }) },
    auth.grant(calendarApi, { scopes: ['calendar:read'] }).withArgs(async ({ days }, _ctx, access) => {
      if (access.hasErrors()) {
        return {
          content: [{ type: 'text', text: `No calendar access: ${JSON.stringify(access.getErrors())}` }],
          isError: true,
        };
      }
      const response = await fetch(`${calendarApi}/events?days=${days}`, {
        headers: { authorization: `Bearer ${access.access(calendarApi).accessToken}` },
      });
      return { content: [{ type: 'text', text: await response.text() }] };
    }),
  );
  return server;
});

const app = express();
// Serves /mcp and the well-known metadata; everything else falls through to your routes.
app.use(expressHandler(auth.protect(mcp, { toolScopes: { list_events: ['calendar:read'] } })));
app.get('/healthz', (_req, res) => {
  res.send('ok');
});
app.listen(Number(new URL(resource).port || 3000), '127.0.0.1');
