import type { Command } from '../command.js';
import { CLI_EXIT } from '../common.js';
import { CONNECTING_USAGE, runConnected } from '../connect.js';
import { table } from '../output.js';

const command: Command = {
  summary: 'List the resources (and resource templates) of an MCP server',
  usage: `Usage: gatehouse resources <mcp-url> [options]
       gatehouse resources [options] -- COMMAND [ARGS…]

Lists the resources — URI, name and MIME type — and then the resource templates. With --json prints
{ resources, resourceTemplates } with every field. Read one with \`gatehouse read <url> <uri>\`.

${CONNECTING_USAGE}

Exit codes: 0 listed, 1 failed, 2 bad usage, 3 a login is needed.`,
  async run(args) {
    return runConnected(
      'resources',
      args,
      { min: 0, max: 0, what: 'nothing' },
      async (client, _rest, { out, values }) => {
        const resources = await client.listResources();
        const resourceTemplates = await client.listResourceTemplates().catch(() => []);
        if (values.json) {
          out.printJson({ resources, resourceTemplates });
          return CLI_EXIT.ok;
        }
        if (resources.length === 0 && resourceTemplates.length === 0) out.note('The server lists no resources.');
        if (resources.length) {
          out.print(table(resources.map((r) => [out.paint('bold', r.uri), r.name, r.mimeType ?? ''])));
        }
        if (resourceTemplates.length) {
          out.print(`${resources.length ? '\n' : ''}Templates:`);
          out.print(table(resourceTemplates.map((t) => [out.paint('bold', t.uriTemplate), t.name, t.mimeType ?? ''])));
        }
        return CLI_EXIT.ok;
      },
    );
  },
};
export default command;
