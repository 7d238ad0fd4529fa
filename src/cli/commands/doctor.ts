import { parseArgs } from 'node:util';
import { diagnose, formatDoctorReport } from '../../client/doctor.js';
import { type Command, EXIT, UsageError } from '../command.js';

const command: Command = {
  summary: "Check an MCP server's OAuth setup the way clients discover it, and say what to fix",
  usage: `Usage: gatehouse doctor <mcp-url> [--json] [--timeout SECONDS]

Probes the server without a token, then every discovery URL in spec order (protected-resource metadata from the
challenge, path form, root; authorization-server metadata RFC 8414 and OpenID variants), and checks issuer match,
PKCE S256, registration options, secure endpoints and that the metadata's resource is this server.

Exit codes: 0 nothing will break a login, 1 a problem was found, 2 bad usage.`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { json: { type: 'boolean' }, timeout: { type: 'string' } },
    });
    if (positionals.length !== 1) throw new UsageError('expected exactly one MCP server URL');
    const timeout = values.timeout === undefined ? 10 : Number(values.timeout);
    if (!(timeout > 0)) throw new UsageError('--timeout must be a positive number of seconds');
    const report = await diagnose(positionals[0]!, { timeoutMs: timeout * 1000 });
    if (values.json) console.log(JSON.stringify(report, null, 2));
    else console.log(formatDoctorReport(report, { colour: process.stdout.isTTY === true && !process.env['NO_COLOR'] }));
    return report.ok ? EXIT.ok : EXIT.failure;
  },
};
export default command;
