/**
 * The smallest protected MCP server: a web-standard fetch handler (Workers, Bun, Deno), served here with
 * node:http. Runs on its own: it starts Gatehouse's test authorization server, mints a token and calls the tool.
 *
 *   npm run example -- examples/server-fetch.ts
 */
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { jwtVerifier, listen, protect, toNodeListener } from 'gatehouse/server';
import { startTestAuthorizationServer } from 'gatehouse/testing';

const as = await startTestAuthorizationServer();
let target: Parameters<typeof listen>[0] = () => {};
const server = await listen((req, res) => target(req, res));
const resource = `${server.url}/mcp`;

const mcp = createMcpHandler(() => {
  const mcpServer = new McpServer({ name: 'hello', version: '1.0.0' });
  mcpServer.registerTool('hello', { description: 'Greets the caller' }, async (ctx) => ({
    content: [{ type: 'text', text: `Hello, ${String(ctx.http?.authInfo?.extra?.['subject'])}` }],
  }));
  return mcpServer;
});
const handler = protect(mcp, {
  resource,
  authorizationServers: [as.issuer],
  verifier: jwtVerifier({ issuer: as.issuer }), // JWKS discovered; audience = resource
  requiredScopes: ['mcp:tools'],
});
target = toNodeListener(handler); // or: export default { fetch: handler }

const call = (token?: string) =>
  fetch(resource, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hello', arguments: {} } }),
  });

const anonymous = await call();
console.log(anonymous.status, anonymous.headers.get('www-authenticate'));
const token = await as.mintToken({ subject: 'alice', scopes: ['mcp:tools'], audience: resource });
const answer = await call(token);
console.log(answer.status, await answer.text());
await server.close();
await as.close();
