import { existsSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import type { AuthProvider, OAuthClientProvider, Transport } from '@modelcontextprotocol/client';
import { GatehouseError } from '../oauth/errors.js';
import type { OAuth } from './oauth.js';

/**
 * How to authenticate to an HTTP server: `'oauth'` (log in with OAuth 2.1, a browser opens when needed), an
 * {@link OAuth} you configured, a bearer token string, or any SDK `AuthProvider` / `OAuthClientProvider`.
 */
export type ClientAuth = 'oauth' | OAuth | (string & {}) | AuthProvider | OAuthClientProvider;

/** A server started as a child process, speaking MCP over its stdin and stdout. */
export interface StdioServerConfig {
  command: string;
  args?: string[];
  /** Extra environment variables, added to a safe default environment (`PATH`, `HOME`, …). */
  env?: Record<string, string>;
  cwd?: string;
}

/** A server reached over HTTP: streamable HTTP, falling back to SSE for servers that only speak SSE. */
export interface HttpServerConfig {
  url: string | URL;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  auth?: ClientAuth;
  /** Force a transport instead of trying streamable HTTP first. Default: SSE for `/sse` paths, else auto. */
  transport?: 'streamable-http' | 'http' | 'sse';
}

/** One entry of an `mcpServers` configuration. */
export type ServerConfig = StdioServerConfig | HttpServerConfig;

/** The Claude Desktop / Cursor configuration format: several servers by name. */
export interface McpServersConfig {
  mcpServers: Record<string, ServerConfig>;
}

/** An MCP server object in this process, such as the SDK's `McpServer` or `Server`: connected in memory. */
export interface InProcessServer {
  connect(transport: Transport): Promise<void>;
}

/**
 * What a {@link Client} connects to:
 * - an `http(s)` URL (string or `URL`): streamable HTTP, with SSE fallback; `/sse` paths go straight to SSE;
 * - a path to a `.js`, `.mjs`, `.cjs` or `.ts` file (run with Node) or a `.py` file (run with Python), over stdio;
 * - `{ command, args, env, cwd }`: any command over stdio; `{ url, headers, auth }`: an HTTP server;
 * - an SDK server instance (`McpServer`), or a function making one per connection: in memory, for tests;
 * - `{ mcpServers: { name: … } }`: several servers at once, their tools and prompts prefixed `name_`;
 * - an SDK `Transport` you built yourself.
 */
export type ClientSource =
  | string
  | URL
  | StdioServerConfig
  | HttpServerConfig
  | McpServersConfig
  | InProcessServer
  | InProcessServerFactory;

/** Makes a fresh in-process server for each connection: an SDK server serves one client at a time. */
export type InProcessServerFactory = () => InProcessServer | Promise<InProcessServer>;

/** The source given to a `Client` is not one it can connect to, or the options do not fit it. */
export class InvalidSourceError extends GatehouseError {
  constructor(message: string, hint?: string) {
    super(message, {
      code: 'ERR_INVALID_SOURCE',
      hint:
        hint ??
        'Pass an http(s) URL, a path to a .js/.mjs/.ts/.py server, { command, args }, { url }, an McpServer instance, or { mcpServers: {...} }.',
    });
  }
}

/** @internal A source, resolved to one way of connecting. */
export type ResolvedSource =
  | {
      kind: 'http';
      url: URL;
      transport: 'auto' | 'streamable-http' | 'sse';
      headers?: Record<string, string>;
      auth?: ClientAuth;
    }
  | { kind: 'stdio'; command: string; args: string[]; env?: Record<string, string>; cwd?: string }
  | { kind: 'memory'; server: InProcessServer | InProcessServerFactory }
  | { kind: 'transport'; transport: Transport };

/** @internal */
export type ResolvedSources =
  | { kind: 'single'; source: ResolvedSource }
  | { kind: 'multi'; servers: Map<string, ResolvedSource> };

const ACCEPTED =
  'an http(s) URL, a path to a .js/.mjs/.cjs/.ts/.py file, { command, args?, env?, cwd? }, { url, headers?, auth? }, an SDK server instance (McpServer) or a function returning one, an SDK Transport, or { mcpServers: { name: config } }';

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object') return `an object with keys [${Object.keys(value).join(', ')}]`;
  return `a ${typeof value}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isTransport(value: Record<string, unknown>): value is Record<string, unknown> & Transport {
  return (
    typeof value['start'] === 'function' && typeof value['send'] === 'function' && typeof value['close'] === 'function'
  );
}

/** Node on Node 22.6+ strips types itself; before that, `.ts` servers need `tsx`. */
function typeScriptRunner(): { command: string; args: string[] } {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  if (major > 22 || (major === 22 && minor >= 6)) {
    return { command: process.execPath, args: ['--experimental-strip-types', '--no-warnings'] };
  }
  return { command: 'npx', args: ['--no-install', 'tsx'] };
}

function fromPath(path: string, options: { env?: Record<string, string>; cwd?: string }): ResolvedSource {
  const file = resolve(path);
  const ext = extname(file).toLowerCase();
  let runner: { command: string; args: string[] };
  if (ext === '.js' || ext === '.mjs' || ext === '.cjs') runner = { command: process.execPath, args: [] };
  else if (ext === '.ts' || ext === '.mts') runner = typeScriptRunner();
  else if (ext === '.py') runner = { command: process.platform === 'win32' ? 'python' : 'python3', args: [] };
  else {
    throw new InvalidSourceError(
      `Cannot tell how to run ${JSON.stringify(path)}: expected a .js, .mjs, .cjs, .ts or .py file, or an http(s) URL`,
      'For another kind of server pass { command, args } (for example { command: "uvx", args: ["my-server"] }).',
    );
  }
  if (!existsSync(file)) {
    throw new InvalidSourceError(
      `The server script ${file} does not exist`,
      'Check the path; relative paths are resolved against the current working directory.',
    );
  }
  return { kind: 'stdio', command: runner.command, args: [...runner.args, file], env: options.env, cwd: options.cwd };
}

function fromUrl(url: URL, config: Omit<HttpServerConfig, 'url'> = {}): ResolvedSource {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidSourceError(
      `Unsupported URL scheme ${url.protocol} in ${url.href}: only http and https are supported`,
    );
  }
  const forced = config.transport === 'http' ? 'streamable-http' : config.transport;
  // The SSE transport's endpoint conventionally ends in /sse; such servers do not speak streamable HTTP.
  const transport = forced ?? (/\/sse\/?$/.test(url.pathname) ? 'sse' : 'auto');
  return { kind: 'http', url, transport, headers: config.headers, auth: config.auth };
}

function fromConfig(name: string, entry: unknown): ResolvedSource {
  if (!isObject(entry)) {
    throw new InvalidSourceError(`mcpServers.${name} must be an object with url or command, got ${describe(entry)}`);
  }
  if (typeof entry['url'] === 'string' || entry['url'] instanceof URL) {
    return fromUrl(new URL(entry['url']), entry as unknown as HttpServerConfig);
  }
  if (typeof entry['command'] === 'string') {
    if (entry['auth'] !== undefined) throw authOnStdio(`mcpServers.${name}`);
    const { command, args, env, cwd } = entry as unknown as StdioServerConfig;
    return { kind: 'stdio', command, args: args ?? [], env, cwd };
  }
  throw new InvalidSourceError(
    `mcpServers.${name} has neither url nor command (got ${describe(entry)})`,
    'Each server entry needs either "url" (with optional "headers" and "auth") or "command" (with optional "args", "env", "cwd").',
  );
}

function authOnStdio(what: string): InvalidSourceError {
  return new InvalidSourceError(
    `${what} runs over stdio, and auth only applies to HTTP servers`,
    'Remove `auth`; pass credentials to a stdio server through `env` instead.',
  );
}

/**
 * @internal Resolves a {@link ClientSource} to how to connect, throwing {@link InvalidSourceError} for anything
 * else. Top-level `auth`, `env` and `cwd` apply to a single server.
 */
export function resolveSource(
  source: unknown,
  options: { auth?: ClientAuth; env?: Record<string, string>; cwd?: string } = {},
): ResolvedSources {
  let resolved: ResolvedSource;
  if (typeof source === 'string') {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) resolved = fromUrl(new URL(source), { auth: options.auth });
    else if (source.trim() === '') throw new InvalidSourceError(`The source is an empty string; expected ${ACCEPTED}`);
    else resolved = fromPath(source, options);
  } else if (source instanceof URL) {
    resolved = fromUrl(source, { auth: options.auth });
  } else if (isObject(source) && 'mcpServers' in source) {
    const entries = source['mcpServers'];
    if (!isObject(entries) || Object.keys(entries).length === 0) {
      throw new InvalidSourceError(
        'mcpServers must name at least one server',
        'Example: { mcpServers: { weather: { url: "https://…/mcp" } } }',
      );
    }
    if (options.auth !== undefined) {
      throw new InvalidSourceError(
        'Top-level `auth` is ambiguous with several servers',
        'Put `auth` in each server entry of mcpServers instead.',
      );
    }
    const servers = new Map<string, ResolvedSource>();
    for (const [name, entry] of Object.entries(entries)) servers.set(name, fromConfig(name, entry));
    // One server needs no prefixes: it behaves like a plain single-server client.
    if (servers.size === 1) return { kind: 'single', source: [...servers.values()][0]! };
    return { kind: 'multi', servers };
  } else if (isObject(source) && (typeof source['url'] === 'string' || source['url'] instanceof URL)) {
    const config = source as unknown as HttpServerConfig;
    resolved = fromUrl(new URL(config.url), { ...config, auth: config.auth ?? options.auth });
  } else if (isObject(source) && typeof source['command'] === 'string') {
    if (source['auth'] !== undefined) throw authOnStdio('This server');
    const config = source as unknown as StdioServerConfig;
    resolved = {
      kind: 'stdio',
      command: config.command,
      args: config.args ?? [],
      env: config.env || options.env ? { ...config.env, ...options.env } : undefined,
      cwd: config.cwd ?? options.cwd,
    };
  } else if (isObject(source) && isTransport(source)) {
    resolved = { kind: 'transport', transport: source };
  } else if (isObject(source) && typeof source['connect'] === 'function') {
    resolved = { kind: 'memory', server: source as unknown as InProcessServer };
  } else if (typeof source === 'function') {
    resolved = { kind: 'memory', server: source as InProcessServerFactory };
  } else {
    throw new InvalidSourceError(`Cannot connect to ${describe(source)}: expected ${ACCEPTED}`);
  }
  if (options.auth !== undefined && resolved.kind !== 'http') {
    throw resolved.kind === 'stdio'
      ? authOnStdio('This server')
      : new InvalidSourceError('auth only applies to HTTP servers', 'Remove `auth` for in-memory servers.');
  }
  return { kind: 'single', source: resolved };
}
