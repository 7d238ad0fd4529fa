import type { Command } from '../command.js';
import { CLI_EXIT } from '../common.js';
import { CONNECTING_USAGE, runConnected } from '../connect.js';

const command: Command = {
  summary: 'Read a resource of an MCP server',
  usage: `Usage: gatehouse read <mcp-url> <resource-uri> [options]
       gatehouse read <resource-uri> [options] -- COMMAND [ARGS…]

Prints the resource's text; binary contents are shown as [blob MIME, N bytes] (--json prints every content item
as the server sent it, blobs base64).

${CONNECTING_USAGE}

Exit codes: 0 read, 1 failed (unknown resource, server unreachable), 2 bad usage, 3 a login is needed.`,
  async run(args) {
    return runConnected(
      'read',
      args,
      { min: 1, max: 1, what: 'one resource URI' },
      async (client, [uri], { out, values }) => {
        const contents = await client.readResource(uri!);
        if (values.json) {
          out.printJson(contents);
          return CLI_EXIT.ok;
        }
        for (const item of contents) {
          if ('text' in item && typeof item.text === 'string') out.print(item.text);
          else if ('blob' in item && typeof item.blob === 'string') {
            const bytes = Buffer.from(item.blob, 'base64').length;
            out.print(`[blob ${item.mimeType ?? 'application/octet-stream'}, ${bytes} bytes]`);
          }
        }
        return CLI_EXIT.ok;
      },
    );
  },
};
export default command;
