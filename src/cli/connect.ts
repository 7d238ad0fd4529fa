import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Client } from '../client/client.js';
import type { ClientAuth, McpServersConfig, ServerConfig } from '../client/source.js';
import { canonicalServer } from '../storage/tokens.js';
import { EXIT, UsageError } from './command.js';
import {
  AUTH_OPTIONS,
  AUTH_USAGE,
  type AuthFlags,
  CliError,
  GLOBAL_OPTIONS,
  GLOBAL_USAGE,
  type LoginPolicy,
  loginTimeoutMs,
  makeOAuth,
  runCommand,
  serverUrl,
} from './common.js';
import type { Output } from './output.js';
import { type CliStore, openStore } from './store-option.js';

/** Options of the commands that connect to servers (tools, call). */
export const CONNECT_OPTIONS = {
  header: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  'no-auth': { type: 'boolean' },
} as const;

export const CONNECT_USAGE = `Connection options:
  --header "Name: value"  an extra HTTP header on every request (repeatable); \${VAR} in the value is the
                          environment variable VAR
  -- COMMAND [ARGS…]      instead of a URL: a stdio server to start, e.g. -- npx -y @modelcontextprotocol/server-everything
  --no-auth               send no token, never log in (for servers without OAuth)
  --timeout SECONDS       timeout of each request (default 60)`;

export interface ConnectFlags extends AuthFlags {
  header?: string[];
  timeout?: string;
  'no-auth'?: boolean;
  'allow-http'?: boolean;
}

/**
 * Parses repeated `--header "Name: value"` options. `${VAR}` in a value is replaced by the environment variable
 * (as mcp-remote does), so a secret stays out of the desktop client's config and out of `ps`.
 */
export function parseHeaders(
  values: string[] | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> | undefined {
  if (!values?.length) return undefined;
  const headers: Record<string, string> = {};
  for (const value of values) {
    const colon = value.indexOf(':');
    const name = colon > 0 ? value.slice(0, colon).trim() : '';
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      throw new UsageError(`--header must look like "Name: value", got ${JSON.stringify(value)}`);
    }
    headers[name] = value
      .slice(colon + 1)
      .trim()
      .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, variable: string) => {
        const found = env[variable];
        if (found === undefined) {
          throw new UsageError(`--header ${name}: the environment variable ${variable} is not set`);
        }
        return found;
      });
  }
  return headers;
}

function hasAuthorization(headers: Record<string, string> | undefined): boolean {
  return Object.keys(headers ?? {}).some((name) => name.toLowerCase() === 'authorization');
}

/** Reads an `mcpServers` configuration file (Claude Desktop / Cursor format). */
async function readConfig(file: string): Promise<McpServersConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read the configuration ${file}: ${(error as Error).message}`, {
      hint: 'check the path given to --config',
      cause: error,
    });
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw new CliError(`${file} is not valid JSON: ${(error as Error).message}`, {
      hint: 'fix the JSON syntax (no comments or trailing commas)',
      cause: error,
    });
  }
  const servers = (config as { mcpServers?: unknown } | null)?.mcpServers;
  if (typeof servers !== 'object' || servers === null || Array.isArray(servers)) {
    throw new CliError(`${file} has no "mcpServers" object`, {
      hint: 'use the format { "mcpServers": { "name": { "url": "https://…/mcp" } } }',
    });
  }
  return config as McpServersConfig;
}

/**
 * Opens a {@link Client} on a URL or on an `mcpServers` file, with the stored OAuth credentials for every HTTP
 * server (a server with its own `Authorization` header, or `--no-auth`, gets none).
 */
export async function openClient(
  target: { url?: string; config?: string; command?: string[] },
  flags: ConnectFlags,
  context: { out: Output; store: CliStore; policy: LoginPolicy },
): Promise<Client> {
  const { Client } = await import('../client/client.js');
  let timeout: number | undefined;
  if (flags.timeout !== undefined) {
    timeout = Number(flags.timeout) * 1000;
    if (!(timeout > 0)) throw new UsageError('--timeout must be a positive number of seconds');
  }
  const headers = parseHeaders(flags.header);
  const authFor = async (url: string, entryHeaders?: Record<string, string>): Promise<ClientAuth | undefined> => {
    if (flags['no-auth'] || hasAuthorization(entryHeaders)) return undefined;
    return makeOAuth(url, flags, { ...context, headers: entryHeaders });
  };
  const options = {
    timeout,
    // A browser login happens inside connect: give it the OAuth login timeout, not the request timeout.
    connectTimeout: (loginTimeoutMs(flags['login-timeout']) ?? 300_000) + 60_000,
    clientInfo: { name: 'gatehouse-cli', version: '0.1.0' },
  };
  if (target.config) {
    const config = await readConfig(target.config);
    const servers: Record<string, ServerConfig> = {};
    for (const [name, entry] of Object.entries(config.mcpServers)) {
      if (entry && typeof entry === 'object' && 'url' in entry && entry.url !== undefined) {
        const url = serverUrl(String(entry.url), flags['allow-http']);
        const merged = { ...headers, ...entry.headers };
        const auth = entry.auth ?? (await authFor(url, merged));
        servers[name] = { ...entry, url, ...(Object.keys(merged).length ? { headers: merged } : {}), auth };
      } else servers[name] = entry;
    }
    return new Client({ mcpServers: servers }, options);
  }
  if (target.command?.length) {
    const [command, ...args] = target.command;
    return new Client({ command: command!, args }, options);
  }
  const url = serverUrl(target.url, flags['allow-http']);
  const auth = await authFor(url, headers);
  return new Client({ url, ...(headers ? { headers } : {}), ...(auth ? { auth } : {}) }, options);
}

/** What a connecting command talks to: `<url>`, `--config FILE`, or `-- COMMAND ARGS…` (a stdio server). */
export interface Target {
  url?: string;
  config?: string;
  command?: string[];
}

/**
 * Splits a connecting command's arguments at `--`: before it the command's own arguments and options, after it a
 * stdio server's command line (`gatehouse tools -- npx -y @modelcontextprotocol/server-everything`), as MCP
 * Inspector's CLI takes it.
 */
export function splitServerCommand(args: string[]): { args: string[]; command?: string[] } {
  const dashes = args.indexOf('--');
  if (dashes === -1) return { args };
  const command = args.slice(dashes + 1);
  if (command.length === 0) throw new UsageError('expected a server command after --, e.g. -- node server.mjs');
  return { args: args.slice(0, dashes), command };
}

/** Options of every command that connects to servers. */
export const CONNECTING_OPTIONS = {
  ...GLOBAL_OPTIONS,
  ...AUTH_OPTIONS,
  ...CONNECT_OPTIONS,
  config: { type: 'string' },
} as const;

/** The usage lines every connecting command shares. */
export const CONNECTING_USAGE = `Options:
  --config FILE           an mcpServers JSON file instead of a URL (every server is asked)
${CONNECT_USAGE}

${AUTH_USAGE}

${GLOBAL_USAGE}`;

type ConnectingValues = ReturnType<typeof parseConnecting>['values'];

function parseConnecting(args: string[]) {
  return parseArgs({ args, allowPositionals: true, options: CONNECTING_OPTIONS });
}

/**
 * Runs a command that talks to servers: `<name> <url> [more…]`, `<name> --config FILE [more…]` or
 * `<name> [more…] -- COMMAND ARGS…`. Connects (logging in if needed and allowed), warns about servers of a config
 * that failed, runs `body` with the positional arguments after the target, and closes.
 */
export async function runConnected(
  name: string,
  rawArgs: string[],
  arity: { min: number; max: number; what: string; check?: (rest: string[]) => void },
  body: (
    client: Client,
    rest: string[],
    context: { out: Output; values: ConnectingValues; server: string },
  ) => Promise<number>,
): Promise<number> {
  const split = splitServerCommand(rawArgs);
  const { values, positionals } = parseConnecting(split.args);
  let target: Target;
  if (split.command) target = { command: split.command };
  else if (values.config !== undefined) target = { config: values.config };
  else {
    if (positionals.length === 0) {
      throw new UsageError(`expected an MCP server URL, --config FILE, or -- COMMAND ARGS (then ${arity.what})`);
    }
    target = { url: positionals.shift()! };
  }
  if (split.command && values.config !== undefined) throw new UsageError('give --config or -- COMMAND, not both');
  if (positionals.length < arity.min || positionals.length > arity.max) {
    throw new UsageError(`expected ${arity.what} after the server`);
  }
  arity.check?.(positionals);
  // How the fix hints name the server again.
  const server = target.url ?? (target.config ? `--config ${target.config}` : `-- ${target.command!.join(' ')}`);
  return runCommand(name, values, async (out) => {
    const store = openStore(values.store);
    const client = await openClient(target, values, { out, store, policy: 'interactive' });
    try {
      await client.connect();
      for (const failure of client.failures) {
        out.note(`${out.paintErr('yellow', 'warning:')} ${failure.server} is unavailable: ${failure.error.message}`);
      }
      return await body(client, positionals, { out, values, server });
    } catch (error) {
      throw withoutOAuthRefused(error, target.url, values) ?? withListingHint(error, name, server) ?? error;
    } finally {
      await client.close();
    }
  });
}

/** The command that lists what a command names: where to look up a tool, resource or prompt the server refused. */
const LISTING: Record<string, string> = { call: 'tools', read: 'resources', prompt: 'prompts' };

/**
 * An unknown name or invalid arguments (JSON-RPC -32602, or -32002 resource not found): the client's hint names
 * its own methods (listTools…), so point at the command that lists them for this server instead.
 */
function withListingHint(error: unknown, name: string, server: string): CliError | undefined {
  const code = (error as { protocolCode?: unknown } | undefined)?.protocolCode;
  const listing = LISTING[name];
  if (!(error instanceof Error) || listing === undefined || (code !== -32602 && code !== -32002)) return undefined;
  return new CliError(error.message, {
    code: 'ERR_INVALID_PARAMS',
    hint: `check the name and arguments against \`gatehouse ${listing} ${server}\``,
    cause: error,
  });
}

/**
 * A 401 when the CLI was told not to use OAuth (`--no-auth`, or an `Authorization` header of the user's): the
 * client's own hint names its library options, so say which flag to change instead. Exit code 3, as any 401.
 */
function withoutOAuthRefused(error: unknown, url: string | undefined, flags: ConnectFlags): CliError | undefined {
  const header = hasAuthorization(parseHeaders(flags.header));
  if (url === undefined || !(flags['no-auth'] || header)) return undefined;
  let unauthorized = false;
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === 'ERR_UNAUTHORIZED') unauthorized = true;
  }
  if (!unauthorized) return undefined;
  const server = canonicalServer(new URL(url));
  return header
    ? new CliError(`${server} refused the Authorization header given with --header (HTTP 401)`, {
        code: 'ERR_UNAUTHORIZED',
        hint: `check the credential in --header "Authorization: …", or leave the header out to log in with OAuth (\`gatehouse login ${server}\`)`,
        exitCode: EXIT.loginNeeded,
        cause: error,
      })
    : new CliError(`${server} requires authorization (HTTP 401), and --no-auth sends no token`, {
        code: 'ERR_UNAUTHORIZED',
        hint: `leave out --no-auth to use the stored login, or log in first: \`gatehouse login ${server}\``,
        exitCode: EXIT.loginNeeded,
        cause: error,
      });
}
