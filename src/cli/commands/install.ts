import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';
import { CLI_EXIT, CliError, GLOBAL_OPTIONS, runCommand, serverUrl } from '../common.js';
import { nearest } from '../parse-errors.js';

/** The desktop clients `install` knows: where each keeps its user-level MCP configuration, and its shape. */
const CLIENTS = {
  'claude-desktop': { label: 'Claude Desktop', key: 'mcpServers', typed: false },
  cursor: { label: 'Cursor', key: 'mcpServers', typed: false },
  vscode: { label: 'VS Code', key: 'servers', typed: true },
  'claude-code': { label: 'Claude Code', key: 'mcpServers', typed: true },
} as const;
type ClientName = keyof typeof CLIENTS;

/** The user-level configuration file of a client on this platform. */
export function configPath(client: ClientName, env: NodeJS.ProcessEnv = process.env, platform = process.platform) {
  const home = env['HOME'] || env['USERPROFILE'] || homedir();
  const appData = env['APPDATA'] || join(home, 'AppData', 'Roaming');
  const xdgConfig = env['XDG_CONFIG_HOME'] || join(home, '.config');
  const support = join(home, 'Library', 'Application Support');
  switch (client) {
    case 'claude-desktop':
      if (platform === 'darwin') return join(support, 'Claude', 'claude_desktop_config.json');
      if (platform === 'win32') return join(appData, 'Claude', 'claude_desktop_config.json');
      return join(xdgConfig, 'Claude', 'claude_desktop_config.json');
    case 'cursor':
      return join(home, '.cursor', 'mcp.json');
    case 'vscode':
      if (platform === 'darwin') return join(support, 'Code', 'User', 'mcp.json');
      if (platform === 'win32') return join(appData, 'Code', 'User', 'mcp.json');
      return join(xdgConfig, 'Code', 'User', 'mcp.json');
    case 'claude-code':
      return join(home, '.claude.json');
  }
}

/** The environment variable choosing whose file layout `install` writes: `linux`, `darwin` or `win32`. */
const PLATFORM_ENV = 'GATEHOUSE_INSTALL_PLATFORM';

/** The platform whose paths to use: this one, or `$GATEHOUSE_INSTALL_PLATFORM` (another machine's layout, tests). */
function installPlatform(): NodeJS.Platform {
  const given = process.env[PLATFORM_ENV];
  if (given === undefined || given === '') return process.platform;
  if (given !== 'linux' && given !== 'darwin' && given !== 'win32') {
    throw new UsageError(`${PLATFORM_ENV} must be linux, darwin or win32, got ${JSON.stringify(given)}`);
  }
  return given;
}

async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CliError(`${file} is not plain JSON (${(error as Error).message}); nothing was changed`, {
      hint: 'remove its comments or trailing commas, or add the entry by hand (see `gatehouse install --help`)',
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CliError(`${file} does not hold a JSON object; nothing was changed`, {
      hint: 'fix the file, or move it away and run the command again',
    });
  }
  return value as Record<string, unknown>;
}

const command: Command = {
  summary: 'Add an MCP server to Claude Desktop, Cursor, VS Code or Claude Code, through `gatehouse proxy`',
  usage: `Usage: gatehouse install <client> <mcp-url> [--name NAME] [options] [-- PROXY OPTIONS…]

Writes an entry for the server into the client's user configuration, keeping every other entry: the client
then starts \`npx -y gatehouse proxy <mcp-url>\`, which logs in with OAuth and forwards stdio to the server.

Clients and the files written (Linux; macOS uses ~/Library/Application Support, Windows %APPDATA%, for Claude
Desktop and VS Code; GATEHOUSE_INSTALL_PLATFORM=linux|darwin|win32 picks another platform's layout):
  claude-desktop   ~/.config/Claude/claude_desktop_config.json   { "mcpServers": { NAME: { command, args } } }
  cursor           ~/.cursor/mcp.json                            { "mcpServers": { NAME: { command, args } } }
  vscode           ~/.config/Code/User/mcp.json                  { "servers": { NAME: { type: "stdio", … } } }
  claude-code      ~/.claude.json                                { "mcpServers": { NAME: { type: "stdio", … } } }

Options:
  --name NAME           the entry's name (default: the server's host name); an entry of that name is replaced
  --allow-http          allow plain http to a non-loopback server
  -- PROXY OPTIONS…     passed on to gatehouse proxy, e.g. -- --scope mcp:tools --header 'X-Key: \${KEY}'
  --json                print { client, file, name, entry, replaced } on stdout

Exit codes: 0 written, 1 failed (the file is not plain JSON, or cannot be written), 2 bad usage.

Example:
  gatehouse install claude-desktop https://mcp.example.com/mcp --name example`,
  async run(args) {
    const dashes = args.indexOf('--');
    const proxyArgs = dashes === -1 ? [] : args.slice(dashes + 1);
    const { values, positionals } = parseArgs({
      args: dashes === -1 ? args : args.slice(0, dashes),
      allowPositionals: true,
      options: { ...GLOBAL_OPTIONS, name: { type: 'string' }, 'allow-http': { type: 'boolean' } },
    });
    const [client, target, ...extra] = positionals;
    if (!client || !target || extra.length) throw new UsageError('expected a client and an MCP server URL');
    if (!(client in CLIENTS)) {
      const guess = nearest(client, Object.keys(CLIENTS));
      throw new UsageError(
        `unknown client ${client}${guess ? `; did you mean ${guess}?` : ''} (one of ${Object.keys(CLIENTS).join(', ')})`,
      );
    }
    const url = serverUrl(target, values['allow-http']);
    const name = values.name ?? new URL(url).hostname.replace(/^\[|\]$/g, '');
    if (!/^[\w.@-]{1,64}$/.test(name)) throw new UsageError('--name may use letters, digits, . _ - and @ only');
    return runCommand('install', values, async (out) => {
      const shape = CLIENTS[client as ClientName];
      const file = configPath(client as ClientName, process.env, installPlatform());
      const config = await readJsonObject(file);
      const servers = (config[shape.key] ?? {}) as Record<string, unknown>;
      if (typeof servers !== 'object' || servers === null || Array.isArray(servers)) {
        throw new CliError(`${file}: "${shape.key}" is not an object; nothing was changed`, {
          hint: `fix "${shape.key}" in the file, then run the command again`,
        });
      }
      const entry = {
        ...(shape.typed ? { type: 'stdio' } : {}),
        command: 'npx',
        args: ['-y', 'gatehouse', 'proxy', url, ...(values['allow-http'] ? ['--allow-http'] : []), ...proxyArgs],
      };
      const replaced = name in servers;
      config[shape.key] = { ...servers, [name]: entry };
      await mkdir(dirname(file), { recursive: true });
      // Written next to the file and renamed over it: the client never reads half a file; the mode is kept.
      const mode = await stat(file).then(
        (s) => s.mode & 0o777,
        () => 0o600,
      );
      const temporary = `${file}.gatehouse-${process.pid}.tmp`;
      await writeFile(temporary, `${JSON.stringify(config, null, 2)}\n`, { mode });
      await rename(temporary, file);
      if (values.json) out.printJson({ client, file, name, entry, replaced });
      else {
        out.print(
          `${out.paint('green', '✓')} ${replaced ? 'Replaced' : 'Added'} "${name}" in ${file} (${shape.label}): ${entry.command} ${entry.args.join(' ')}`,
        );
        out.note(`Restart ${shape.label} to use it; the first request opens the browser to log in.`);
      }
      return CLI_EXIT.ok;
    });
  },
};
export default command;
