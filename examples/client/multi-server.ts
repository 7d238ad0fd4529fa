// Several servers at once, in the Claude Desktop / Cursor configuration format.
import { Client, type McpServersConfig } from 'gatehouse/client';

const config: McpServersConfig = {
  mcpServers: {
    weather: { url: 'https://weather.example.com/mcp', auth: 'oauth' },
    files: { command: 'node', args: ['./files-server.mjs'], env: { ROOT: '/srv/files' } },
  },
};

await using client = new Client(config);
await client.connect(); // connects every server in parallel; throws only if none connects

// A server that failed is reported; the others keep working.
for (const { server, error } of client.failures) console.warn(`${server} is unavailable: ${error.message}`);

// Tools and prompts are prefixed with the server name, resources get it as their first path segment.
const forecast = await client.callTool('weather_forecast', { city: 'Oslo' });
const [readme] = await client.readResource('file://files//srv/files/README.md');
console.log(forecast.data, readme);
