import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client as SdkClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { OAuth } from '../../src/client/oauth.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'bin/gatehouse.js');
/** server-everything from npm, run as installed (no network). */
export const EVERYTHING = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
export const FILESYSTEM = join(ROOT, 'node_modules/@modelcontextprotocol/server-filesystem/dist/index.js');
export const MCP_REMOTE = join(ROOT, 'node_modules/mcp-remote/dist/proxy.js');

/** A `gatehouse gateway` process. */
export interface GatewayProcess {
  child: ChildProcess;
  /** The base URL. */
  url: string;
  /** MCP URLs printed, by upstream name. */
  mcp: Record<string, string>;
  /** The generated admin password, when one was printed. */
  password?: string;
  stderr(): string;
  /** Every JSON line on stdout (the logs and the audit trail). */
  logs(): Array<Record<string, unknown>>;
  stdout(): string;
  stop(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];

/** Stops everything the helpers started (call in afterAll). */
export async function cleanup(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
}

export async function tempDir(prefix = 'gatehouse-gateway-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Environment for child processes: the test's minus GATEHOUSE_*, plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('GATEHOUSE_')) env[key] = value;
  }
  return { ...env, NO_COLOR: '1', ...extra };
}

/** Starts `node bin/gatehouse.js gateway ARGS` and waits until it prints where it listens. */
export async function startGatewayProcess(
  args: string[],
  options: { env?: Record<string, string>; dataDir?: string } = {},
): Promise<GatewayProcess> {
  const dataDir = options.dataDir ?? (await tempDir());
  const child = spawn(process.execPath, [BIN, 'gateway', '--port', '0', ...args], {
    env: childEnv({ GATEHOUSE_DATA_DIR: join(dataDir, 'data'), ...options.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  cleanups.push(stop);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${stderr}`)), 30_000);
    child.stderr!.on('data', (d) => {
      stderr += d;
      if (/log in: gatehouse login/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code}:\n${stderr}`));
    });
  });
  const url = /listening on (\S+)/.exec(stderr)![1]!;
  const mcp: Record<string, string> = {};
  for (const m of stderr.matchAll(/MCP server (\S+) \(\w+\): (\S+)/g)) mcp[m[1]!] = m[2]!;
  const password = /with the password (\S+)/.exec(stderr)?.[1];
  return {
    child,
    url,
    mcp,
    ...(password && { password }),
    stderr: () => stderr,
    stdout: () => stdout,
    logs: () =>
      stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    stop,
  };
}

/** An OAuth provider that logs in headlessly, with its own in-memory store. */
export function headlessOAuth(mcpUrl: string, username: string, password: string, scopes?: string): OAuth {
  return new OAuth({ tokenStorage: 'memory', mcpUrl, login: { username, password }, ...(scopes && { scopes }) });
}

/** The SDK v2 client, logged in through Gatehouse's OAuth provider. */
export async function sdkClient(
  mcpUrl: string,
  oauth: OAuth,
  capabilities: ConstructorParameters<typeof SdkClient>[1] = {},
): Promise<SdkClient> {
  const client = new SdkClient({ name: 'gateway-test', version: '1.0.0' }, capabilities);
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch: oauth.wrapFetch() }));
  cleanups.push(() => client.close());
  return client;
}

/** A free loopback port (for servers that cannot report the one they picked). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts a child process and remembers to stop it. */
export function spawnTracked(command: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(command, args, { env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Waits until `read()` matches `pattern`. */
export async function waitFor(read: () => string, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(read());
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; got:\n${read().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * server-everything in its streamable-HTTP mode (or, with `mode` `sse`, its 2024-11-05 SSE one), with its stdout
 * (one line per request and session) kept.
 */
export async function everythingOverHttp(port: number, mode: 'streamableHttp' | 'sse' = 'streamableHttp') {
  const child = spawnTracked(process.execPath, [EVERYTHING, mode], { PORT: String(port) });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  await waitFor(() => output, /(listening|running) on port/i, 60_000);
  return {
    child,
    /** The session ids server-everything created, in order. */
    sessions: () => [...output.matchAll(/Session initialized with ID: (\S+)/g)].map((m) => m[1]!),
  };
}

/**
 * Connects `client` (the SDK client, with whatever capabilities and handlers it has) to `mcpUrl` through mcp-remote
 * from npm, which registers and logs in by its own browser flow: the authorization URL it prints is followed
 * headlessly with `username`/`password`, and the code reaches mcp-remote's own callback listener.
 */
export async function connectThroughMcpRemote(
  client: SdkClient,
  mcpUrl: string,
  username: string,
  password: string,
  configDir?: string,
): Promise<void> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [MCP_REMOTE, mcpUrl],
    env: childEnv({ MCP_REMOTE_CONFIG_DIR: configDir ?? (await tempDir()), BROWSER: 'false' }),
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr!.on('data', (d) => {
    stderr += d;
  });
  const connected = client.connect(transport);
  const login = waitFor(() => stderr, /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/, 30_000).then(async ([url]) => {
    const callback = await headlessAuthorize(new URL(url), new URL(url).searchParams.get('redirect_uri')!, {
      username,
      password,
    });
    const answer = await fetch(callback);
    if (answer.status !== 200) throw new Error(`mcp-remote's callback answered ${answer.status}`);
  });
  // With tokens already in `configDir`, mcp-remote connects without a login.
  await Promise.race([connected, login.then(() => connected)]);
  login.catch(() => {});
  cleanups.push(() => client.close());
}

/**
 * A gateway in front of server-everything over stdio, a process per session or per user (`stdio`), server-everything in its streamable-HTTP mode
 * (`http`) and server-filesystem on a temp directory with a `hello.txt` (`files`), with the embedded AS in memory.
 */
export async function gatewayForClientMatrix(
  stdioIsolation: 'user' | 'session' = 'session',
): Promise<{ gateway: GatewayProcess; files: string }> {
  const httpPort = await freePort();
  await everythingOverHttp(httpPort);
  const files = await tempDir();
  await writeFile(join(files, 'hello.txt'), 'hello from the filesystem server');
  const dir = await tempDir();
  await writeFile(
    join(dir, 'gateway.json'),
    JSON.stringify({
      mcpServers: {
        // By default one process per session: server-everything offers tools by the capabilities of the initialize
        // it saw, and with one process per user that is the user's first session's (mcp-remote's probe, say).
        stdio: { command: process.execPath, args: [EVERYTHING], isolation: stdioIsolation },
        http: { url: `http://127.0.0.1:${httpPort}/mcp` },
        files: { command: process.execPath, args: [FILESYSTEM, files] },
      },
    }),
  );
  const gateway = await startGatewayProcess(['--config', join(dir, 'gateway.json'), '--store', 'memory'], {
    dataDir: dir,
  });
  return { gateway, files };
}

/** The superuser password of {@link externalAuthorizationServer}'s `gatehouse serve` (user `admin`). */
export const EXTERNAL_AS_PASSWORD = 'external-admin-password';

/**
 * A `gatehouse serve` process (memory store, superuser `admin`) that knows `mcpUrl` as a resource with the scope
 * `mcp:tools`: by default the MCP URL of a gateway-to-be at `/mcp`, on a port picked now.
 */
export async function externalAuthorizationServer(
  mcpUrl?: string,
): Promise<{ port: number; mcpUrl: string; issuer: string; child: ChildProcess }> {
  const resource = mcpUrl ?? `http://127.0.0.1:${await freePort()}/mcp`;
  const serve = spawnTracked(
    process.execPath,
    [BIN, 'serve', '--port', '0', '--store', 'memory', '--superuser', 'admin', '--resource', `${resource}=mcp:tools`],
    { GATEHOUSE_SUPERUSER_PASSWORD: EXTERNAL_AS_PASSWORD, GATEHOUSE_DATA_DIR: await tempDir() },
  );
  let serveOutput = '';
  serve.stderr!.on('data', (d) => {
    serveOutput += d;
  });
  const [, issuer] = await waitFor(() => serveOutput, /issuer (\S+), listening/, 30_000);
  return { port: Number(new URL(resource).port), mcpUrl: resource, issuer: issuer!, child: serve };
}

/** A place of its own in a shared store, from {@link freshStore}. */
export interface FreshStore {
  /** The `--store` URL. */
  url: string;
  /** Everything in it, as text: keys and values, or rows. */
  dump(): Promise<string>;
  /** Removes everything in it. */
  drop(): Promise<void>;
}

/**
 * A place of its own in the shared Redis (a key prefix `NAME:`) or PostgreSQL (a database `NAME`), so that test
 * files run in parallel; `port` reaches the store another way (a relay).
 */
export async function freshStore(backend: 'redis' | 'postgres', name: string, port?: number): Promise<FreshStore> {
  if (backend === 'redis') {
    const { deleteRedisPrefix } = await import('../deployment/cluster.js');
    return {
      url: `redis://127.0.0.1:${port ?? 6379}?prefix=${name}:`,
      async dump() {
        const { createClient } = await import('@redis/client');
        const client = createClient({ url: 'redis://127.0.0.1:6379' });
        await client.connect();
        let dump = '';
        for await (const keys of client.scanIterator({ MATCH: `${name}:*`, COUNT: 500 })) {
          for (const key of keys) {
            const type = await client.type(key);
            const value = type === 'string' ? await client.get(key) : type === 'hash' ? await client.hGetAll(key) : '';
            dump += `${key} ${JSON.stringify(value)}\n`;
          }
        }
        await client.close();
        return dump;
      },
      drop: () => deleteRedisPrefix(`${name}:`),
    };
  }
  const pg = await import('pg');
  const query = async (database: string, sql: string) => {
    const client = new pg.default.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${database}` });
    await client.connect();
    try {
      return (await client.query(sql)).rows;
    } finally {
      await client.end();
    }
  };
  await query('postgres', `CREATE DATABASE ${name}`);
  return {
    url: `postgres://postgres@127.0.0.1:${port ?? 5432}/${name}`,
    dump: async () => JSON.stringify(await query(name, 'SELECT * FROM gatehouse_oidc')),
    drop: async () => {
      await query('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** The JSON-RPC messages of an MCP answer (JSON or SSE). */
export async function mcpMessages(response: Response): Promise<Array<Record<string, unknown>>> {
  const text = await response.text();
  if ((response.headers.get('content-type') ?? '').includes('application/json')) return [JSON.parse(text)];
  return text
    .split('\n')
    .filter((line) => line.startsWith('data:') && line.length > 6)
    .map((line) => JSON.parse(line.slice(5)));
}

/** One raw MCP request to `url` with a bearer token, in session `sessionId` when given. */
export async function rawMcp(url: string, token: string, body: unknown, sessionId?: string, method = 'POST') {
  const response = await fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      'mcp-protocol-version': '2025-06-18',
      ...(sessionId && { 'mcp-session-id': sessionId }),
    },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return {
    status: response.status,
    headers: response.headers,
    sessionId: response.headers.get('mcp-session-id') ?? undefined,
    messages: response.status === 202 || method === 'DELETE' ? [] : await mcpMessages(response),
  };
}

/** An `initialize` for {@link rawMcp}, from a client that calls itself `cluster-raw-client`. */
export const RAW_INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'cluster-raw-client', version: '1' } },
};
/** The `notifications/initialized` that follows it. */
export const RAW_INITIALIZED = { jsonrpc: '2.0', method: 'notifications/initialized' };

/**
 * The `gatehouse gateway` command of the first sh block under `heading` in docs/gateway.md, as arguments: the doc's
 * flags with `local` values for those a test must set (which the doc must all have), and the variables it exports.
 */
export async function documentedGateway(
  heading: string,
  local: Record<string, string>,
): Promise<{ args: string[]; exported: string[] }> {
  const { documentedExports, documentedFlags } = await import('../deployment/cluster.js');
  const doc = join(ROOT, 'docs/gateway.md');
  const documented = documentedFlags(doc, heading, 'gateway');
  const missing = Object.keys(local).filter((flag) => !documented.includes(flag));
  if (missing.length) throw new Error(`docs/gateway.md, "${heading}": the command has no ${missing.join(', ')}`);
  const args = documented.map((word, i) => (documented[i - 1]! in local ? local[documented[i - 1]!]! : word));
  return { args, exported: documentedExports(doc, heading) };
}

/** Stops a proxy from `startProxy`, its open connections too. */
export async function stopProxy(proxy: { server: import('node:http').Server } | undefined): Promise<void> {
  if (!proxy) return;
  proxy.server.closeAllConnections();
  await new Promise((r) => proxy.server.close(r));
}
