import type { Command } from '../command.js';
import { CLI_EXIT } from '../common.js';
import { CONNECTING_USAGE, runConnected } from '../connect.js';

const command: Command = {
  summary: 'Check that an MCP server answers (connect, initialize, ping)',
  usage: `Usage: gatehouse ping <mcp-url> [options]
       gatehouse ping [options] -- COMMAND [ARGS…]

Connects (logging in if needed and allowed), sends a ping and prints how long the answer took; --json prints
{ ok, ms }. With --config every server must answer.

${CONNECTING_USAGE}

Exit codes: 0 the server answered, 1 it did not (the message says why), 2 bad usage, 3 a login is needed.`,
  async run(args) {
    return runConnected(
      'ping',
      args,
      { min: 0, max: 0, what: 'nothing' },
      async (client, _rest, { out, values, server }) => {
        const started = performance.now();
        await client.ping();
        const ms = Math.round(performance.now() - started);
        if (values.json) out.printJson({ ok: true, ms });
        else out.print(`${out.paint('green', '✓')} ${server} answered in ${ms} ms`);
        return CLI_EXIT.ok;
      },
    );
  },
};
export default command;
