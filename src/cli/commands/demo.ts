import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';

const command: Command = {
  summary: 'Run an authorization server, a protected MCP server and a client that logs in, on loopback',
  usage: `Usage: gatehouse demo [--port N]

Starts an authorization server (port N, default random) and a protected MCP server (port N+1), then a client
that knows only the MCP URL logs in headlessly and calls the "whoami" tool. Exits 0 when the whole flow worked.`,
  async run(args) {
    const { values } = parseArgs({ args, options: { port: { type: 'string' } }, strict: true });
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65534)) {
      throw new UsageError('--port must be an integer between 1 and 65534 (the demo uses that port and the next)');
    }
    // Loaded here so that `gatehouse help` does not load the authorization server.
    const { runDemo } = await import('../demo-flow.js');
    await runDemo({ port });
    return 0;
  },
};
export default command;
