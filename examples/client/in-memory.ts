// Test a server without a process or a port: hand the McpServer itself to the Client.
import { McpServer } from '@modelcontextprotocol/server';
import { Client } from 'gatehouse/client';
import { z } from 'zod';

const server = new McpServer({ name: 'calculator', version: '1.0.0' });
server.registerTool('add', { inputSchema: z.object({ a: z.number(), b: z.number() }) }, async ({ a, b }) => ({
  content: [{ type: 'text', text: String(a + b) }],
}));

await using client = new Client(server);
const { data } = await client.callTool<number>('add', { a: 5, b: 3 });
console.log(data === 8);
