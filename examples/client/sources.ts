// Every kind of source a Client accepts; the transport follows from it.
import { McpServer } from '@modelcontextprotocol/server';
import { Client, OAuth } from 'gatehouse/client';

// Streamable HTTP, falling back to SSE for servers that only speak SSE.
const remote = new Client('https://mcp.example.com/mcp');
// An /sse endpoint goes straight to SSE.
const legacy = new Client('https://old.example.com/sse');
// A script, run over stdio: .js/.mjs/.cjs/.ts with Node, .py with Python.
const script = new Client('./my-server.py', { env: { API_KEY: 'secret' }, cwd: './servers' });
// Any command, over stdio.
const command = new Client({ command: 'uvx', args: ['mcp-server-fetch'], env: { LOG_LEVEL: 'debug' } });
// A server object in this process, connected in memory: for tests.
const memory = new Client(new McpServer({ name: 'test', version: '1.0.0' }));
// HTTP with headers, and one of three kinds of auth: 'oauth', an OAuth, or a bearer token.
const withHeaders = new Client({ url: 'https://api.example.com/mcp', headers: { 'x-team': 'core' }, auth: 'token' });
const withOAuth = new Client('https://mcp.example.com/mcp', {
  auth: new OAuth({ clientName: 'My app', scopes: ['mcp:tools'] }),
});

for (const client of [remote, legacy, script, command, memory, withHeaders, withOAuth]) await client.close();
