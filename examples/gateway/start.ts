import { startGateway } from 'gatehouse/gateway';

const gateway = await startGateway(
  {
    port: 8080,
    superuser: 'admin',
    mcpServers: {
      everything: { command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything'], scopes: ['mcp:tools'] },
    },
  },
  { env: { ...process.env, GATEHOUSE_SUPERUSER_PASSWORD: 'a long password' } },
);
console.log(gateway.upstreams.map((u) => u.url)); // ['http://127.0.0.1:8080/everything/mcp']
await gateway.close();
