import { readFile } from 'node:fs/promises';
import type { Client } from '../client/client.js';
import type { ClientAuth, McpServersConfig, ServerConfig } from '../client/source.js';
import { UsageError } from './command.js';
import { type AuthFlags, CliError, type LoginPolicy, makeOAuth, serverUrl } from './common.js';
import type { Output } from './output.js';
import type { CliStore } from './store-option.js';

/** Options of the commands that connect to servers (tools, call). */
export const CONNECT_OPTIONS = {
  header: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  'no-auth': { type: 'boolean' },
} as const;

export const CONNECT_USAGE = `Connection options:
  --header "Name: value"  an extra HTTP header on every request (repeatable)
  --no-auth               send no token, never log in (for servers without OAuth)
  --timeout SECONDS       timeout of each request (default 60)`;

export interface ConnectFlags extends AuthFlags {
  header?: string[];
  timeout?: string;
  'no-auth'?: boolean;
  'allow-http'?: boolean;
}

/** Parses repeated `--header "Name: value"` options. */
export function parseHeaders(values: string[] | undefined): Record<string, string> | undefined {
  if (!values?.length) return undefined;
  const headers: Record<string, string> = {};
  for (const value of values) {
    const colon = value.indexOf(':');
    const name = colon > 0 ? value.slice(0, colon).trim() : '';
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      throw new UsageError(`--header must look like "Name: value", got ${JSON.stringify(value)}`);
    }
    headers[name] = value.slice(colon + 1).trim();
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
  target: { url?: string; config?: string },
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
    return makeOAuth(url, flags, context);
  };
  const options = {
    timeout,
    // A browser login happens inside connect: give it the OAuth login timeout, not the request timeout.
    connectTimeout: 360_000,
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
  const url = serverUrl(target.url, flags['allow-http']);
  const auth = await authFor(url, headers);
  return new Client({ url, ...(headers ? { headers } : {}), ...(auth ? { auth } : {}) }, options);
}
