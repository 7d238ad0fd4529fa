// Every error is a GatehouseError with a `code` for programs and a `hint` for people.
import { AuthenticationError, Client, ConnectionError, McpError, TimeoutError, ToolError } from 'gatehouse/client';

await using client = new Client('https://mcp.example.com/mcp', { auth: 'oauth', timeout: 30_000 });

try {
  const { data } = await client.callTool<{ quotient: number }>('divide', { a: 1, b: 0 }, { timeout: 5_000 });
  console.log(data.quotient);
} catch (error) {
  if (error instanceof ToolError) console.error('the tool reported an error:', error.message, error.result.content);
  else if (error instanceof TimeoutError) console.error(`no answer within ${error.timeoutMs} ms`);
  else if (error instanceof McpError) console.error(`protocol error ${error.protocolCode}:`, error.message);
  else if (error instanceof AuthenticationError) console.error('login failed:', error.message);
  else if (error instanceof ConnectionError) console.error('cannot reach the server:', error.message);
  else throw error;
  if (error instanceof Error && 'hint' in error) console.error(error.hint);
}

// Or look at a tool error instead of catching it.
const result = await client.callTool('divide', { a: 1, b: 0 }, { raiseOnError: false });
if (result.isError) console.error(result.content);
