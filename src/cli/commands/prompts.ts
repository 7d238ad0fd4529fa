import type { Command } from '../command.js';
import { CLI_EXIT } from '../common.js';
import { CONNECTING_USAGE, runConnected } from '../connect.js';
import { table } from '../output.js';

const command: Command = {
  summary: 'List the prompts of an MCP server',
  usage: `Usage: gatehouse prompts <mcp-url> [options]
       gatehouse prompts [options] -- COMMAND [ARGS…]

Lists the prompts — name, arguments (required ones marked *) and description; --json prints the full
definitions. Get one with \`gatehouse prompt <url> <name> [key=value…]\`.

${CONNECTING_USAGE}

Exit codes: 0 listed, 1 failed, 2 bad usage, 3 a login is needed.`,
  async run(args) {
    return runConnected(
      'prompts',
      args,
      { min: 0, max: 0, what: 'nothing' },
      async (client, _rest, { out, values }) => {
        const prompts = await client.listPrompts();
        if (values.json) out.printJson(prompts);
        else if (prompts.length === 0) out.note('The server lists no prompts.');
        else {
          out.print(
            table(
              prompts.map((p) => [
                out.paint('bold', p.name),
                (p.arguments ?? []).map((a) => `${a.name}${a.required ? '*' : ''}`).join(' '),
                (p.description ?? '').split('\n')[0]!.slice(0, 80),
              ]),
            ),
          );
        }
        return CLI_EXIT.ok;
      },
    );
  },
};
export default command;
