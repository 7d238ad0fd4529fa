import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';
import { AUTH_OPTIONS, AUTH_USAGE, CLI_EXIT, GLOBAL_OPTIONS, GLOBAL_USAGE, runCommand } from '../common.js';
import { CONNECT_OPTIONS, CONNECT_USAGE, openClient } from '../connect.js';
import { table } from '../output.js';
import { openStore } from '../store-option.js';

const command: Command = {
  summary: 'List the tools of an MCP server (or of every server in an mcpServers file)',
  usage: `Usage: gatehouse tools <mcp-url> [options]
       gatehouse tools --config FILE [options]

Connects with the stored credentials (refreshing them as needed) and lists the tools: name and description, or
with --json the full definitions (input schemas included). With --config, every server of a Claude Desktop /
Cursor style {"mcpServers": {...}} file is asked; tool names are prefixed "<server>_", and servers that fail are
reported on stderr while the others are listed.

If no credential is stored, a login starts when stderr is a terminal or --login is given; otherwise the command
exits with code 3 and says to run \`gatehouse login <url>\`.

Options:
  --config FILE           an mcpServers JSON file instead of a URL
${CONNECT_USAGE}

${AUTH_USAGE}

${GLOBAL_USAGE}

Exit codes: 0 listed, 1 failed (server unreachable, protocol error), 2 bad usage, 3 a login is needed.

Example:
  gatehouse tools https://mcp.example.com/mcp
  gatehouse tools --config ~/.cursor/mcp.json --json`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { ...GLOBAL_OPTIONS, ...AUTH_OPTIONS, ...CONNECT_OPTIONS, config: { type: 'string' } },
    });
    if (values.config === undefined && positionals.length !== 1) {
      throw new UsageError('expected one MCP server URL, or --config FILE');
    }
    if (values.config !== undefined && positionals.length > 0) throw new UsageError('give a URL or --config, not both');
    return runCommand('tools', values, async (out) => {
      const store = openStore(values.store);
      const client = await openClient({ url: positionals[0], config: values.config }, values, {
        out,
        store,
        policy: 'interactive',
      });
      try {
        await client.connect();
        for (const failure of client.failures) {
          out.note(`${out.paintErr('yellow', 'warning:')} ${failure.server} is unavailable: ${failure.error.message}`);
        }
        const tools = await client.listTools();
        if (values.json) out.printJson(tools);
        else if (tools.length === 0) out.note('The server lists no tools.');
        else {
          out.print(
            table(
              tools.map((tool) => [
                out.paint('bold', tool.name),
                (tool.description ?? '').split('\n')[0]!.slice(0, 100),
              ]),
            ),
          );
        }
        return CLI_EXIT.ok;
      } finally {
        await client.close();
      }
    });
  },
};
export default command;
