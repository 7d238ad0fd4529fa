import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GatehouseError } from '../oauth/errors.js';

const USAGE = `Usage: gatehouse <command> [options]

Commands:
  demo [--port N]   Run an authorization server, a protected MCP server and a client that logs in, on loopback
  help              Show this help

Options:
  --version         Print the version
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Exit codes: 0 success, 1 the command failed, 2 bad usage. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v') {
    console.log(version());
    return 0;
  }
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  if (command === 'demo') {
    const { values } = parseArgs({ args: rest, options: { port: { type: 'string' } }, strict: true });
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65534)) {
      console.error('gatehouse demo: --port must be an integer between 1 and 65534 (it uses that port and the next)');
      return 2;
    }
    const { runDemo } = await import('./demo.js');
    await runDemo({ port });
    return 0;
  }
  console.error(`gatehouse: unknown command "${command}"\n\n${USAGE}`);
  return 2;
}

export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`gatehouse: ${message}`);
    if (error instanceof GatehouseError && error.hint) console.error(`fix: ${error.hint}`);
    if (error instanceof TypeError && /parseArgs|Unknown option/.test(String(error))) process.exitCode = 2;
    else process.exitCode = 1;
  }
}
