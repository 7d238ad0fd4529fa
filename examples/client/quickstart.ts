// Connect to a remote MCP server, logging in with OAuth 2.1 when it asks, and use its tools and resources.
import { Client } from 'gatehouse/client';

await using client = new Client('https://mcp.example.com/mcp', { auth: 'oauth' });

const tools = await client.listTools();
console.log(tools.map((tool) => tool.name));

const result = await client.callTool('add', { a: 2, b: 3 });
console.log(result.data); // 5: the structured result, or the parsed text of a single text block

for (const resource of await client.listResources()) {
  const [content] = await client.readResource(resource.uri);
  if (content && 'text' in content) console.log(resource.uri, content.text);
}
