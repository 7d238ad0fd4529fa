import type { Command } from '../command.js';
import { CLI_EXIT } from '../common.js';
import { CONNECTING_USAGE, runConnected } from '../connect.js';
import { table } from '../output.js';

const command: Command = {
  summary: 'List the tools of an MCP server (or of every server in an mcpServers file)',
  usage: `Usage: gatehouse tools <mcp-url> [options]
       gatehouse tools --config FILE [options]
       gatehouse tools [options] -- COMMAND [ARGS…]

Connects with the stored credentials (refreshing them as needed) and lists the tools: name and description, or
with --json the full definitions (input schemas included). With --config, every server of a Claude Desktop /
Cursor style {"mcpServers": {...}} file is asked; tool names are prefixed "<server>_", and servers that fail are
reported on stderr while the others are listed.

If no credential is stored, a login starts when stderr is a terminal or --login is given; otherwise the command
exits with code 3 and says to run \`gatehouse login <url>\`.

${CONNECTING_USAGE}

Exit codes: 0 listed, 1 failed (server unreachable, protocol error), 2 bad usage, 3 a login is needed.

Example:
  gatehouse tools https://mcp.example.com/mcp
  gatehouse tools --config ~/.cursor/mcp.json --json
  gatehouse tools -- npx -y @modelcontextprotocol/server-everything`,
  async run(args) {
    return runConnected('tools', args, { min: 0, max: 0, what: 'nothing' }, async (client, _rest, { out, values }) => {
      const tools = await client.listTools();
      if (values.json) out.printJson(tools);
      else if (tools.length === 0) out.note('The server lists no tools.');
      else {
        out.print(
          table(
            tools.map((tool) => [out.paint('bold', tool.name), (tool.description ?? '').split('\n')[0]!.slice(0, 100)]),
          ),
        );
      }
      return CLI_EXIT.ok;
    });
  },
};
export default command;
