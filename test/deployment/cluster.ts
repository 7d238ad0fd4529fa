import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect as connectSocket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, fetch as undiciFetch } from 'undici';
import { token } from '../authorization-server/helpers.js';
import { cli } from '../cli/helpers.js';
import { spawnServe } from '../helpers/serve-process.js';

const DOC = fileURLToPath(new URL('../../docs/authorization-server.md', import.meta.url));

export const PASSWORD = 'a long password for the cluster';
export const RESOURCE = 'http://127.0.0.1:8431/mcp';
export const INTROSPECTOR = { id: 'introspector', secret: 'introspector-secret-0123456789' };

/** The first ```sh block under `heading` in a doc. */
function documentedBlock(doc: string, heading: string): string {
  const text = readFileSync(doc, 'utf8');
  const block = /```sh\n([\s\S]*?)```/.exec(text.slice(text.indexOf(heading)))?.[1];
  if (!block) throw new Error(`${doc}: no sh block under "${heading}"`);
  return block;
}

/**
 * The flags of the `gatehouse <command>` line in the first sh block under `heading` of `doc`: what the doc tells
 * operators to run each instance with. Defaults to `gatehouse serve` in docs/authorization-server.md, "Running several
 * instances"; clusters run exactly these, with local values for the addresses.
 */
export function documentedFlags(doc = DOC, heading = '## Running several instances', command = 'serve'): string[] {
  const line = documentedBlock(doc, heading)
    .replace(/\\\n/g, ' ')
    .split('\n')
    .find((l) => l.trim().startsWith(`gatehouse ${command}`));
  if (!line) throw new Error(`${doc}: no gatehouse ${command} command in the block`);
  // Shell words: split on spaces, strip single quotes (the doc quotes the store URL for its `?`).
  const words = line.trim().split(/\s+/).slice(2);
  return words.map((w) => w.replace(/^'(.*)'$/, '$1'));
}

/** The names the same block exports (`export NAME=…`), which every instance is started with. */
export function documentedExports(doc = DOC, heading = '## Running several instances'): string[] {
  return [...documentedBlock(doc, heading).matchAll(/^export ([A-Z_]+)=/gm)].map((m) => m[1]!);
}

/** One `gatehouse serve` process. */
export interface Instance {
  url: string;
  process: ChildProcess;
  output: () => string;
}

export interface Cluster {
  /** The round-robin proxy's URL: the issuer. */
  url: string;
  store: string;
  instances: Instance[];
  /** Which instance answered each proxied request, in order: `{ instance, method, path }`. */
  log: Array<{ instance: number; method: string; path: string }>;
  /** A `fetch` whose connections come from `address` (127.0.0.x): one simulated client. */
  clientFetch(address: string): typeof fetch;
  /** Runs `gatehouse <args>` against the cluster's store (e.g. `admin grants revoke ID`). */
  admin(args: string[]): ReturnType<typeof cli>;
  close(): Promise<void>;
}

/**
 * A small round-robin reverse proxy, appending the client address to `X-Forwarded-For` as nginx does: every request
 * goes to the next backend (the gateway cluster test uses it too).
 */
export function startProxy(
  backends: () => string[],
  log: Cluster['log'],
): Promise<{ server: Server; url: string; next: number }> {
  const state = { next: 0 };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const all = backends();
    const instance = state.next++ % all.length;
    const target = new URL(req.url ?? '/', all[instance]);
    log.push({ instance, method: req.method ?? 'GET', path: target.pathname });
    const forwarded = req.headers['x-forwarded-for'];
    const headers = {
      ...req.headers,
      'x-forwarded-for': `${forwarded ? `${forwarded}, ` : ''}${req.socket.remoteAddress}`,
      'x-forwarded-proto': 'http',
    };
    const upstream = request(target, { method: req.method, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, next: 0 }),
    ),
  );
}

/** Starts one `gatehouse serve` with `args` and resolves with its URL once it says it listens. */
export async function startInstance(args: string[], env: Record<string, string>): Promise<Instance> {
  const server = await spawnServe(args, env);
  return { url: server.url, process: server.child, output: server.output };
}

/**
 * Starts `count` instances of `gatehouse serve` on one fresh Redis prefix or PostgreSQL table, with the documented
 * flags, behind a round-robin proxy whose URL is the issuer.
 */
export async function startCluster(
  backend: 'redis' | 'postgres',
  options: { count?: number; config?: Record<string, unknown> } = {},
): Promise<Cluster> {
  const suffix = randomBytes(5).toString('hex');
  const table = `gh_deploy_${suffix}`;
  const store =
    backend === 'redis'
      ? `redis://127.0.0.1:6379?prefix=gh-deploy-${suffix}:`
      : `postgres://postgres@127.0.0.1:5432/postgres?table=${table}`;
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-deploy-'));
  const configPath = join(dir, 'gatehouse.json');
  await writeFile(
    configPath,
    JSON.stringify({
      clients: [
        {
          client_id: INTROSPECTOR.id,
          client_secret: INTROSPECTOR.secret,
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: [],
          response_types: [],
          redirect_uris: [],
        },
      ],
      refreshTokenGraceSeconds: 2,
      logLevel: 'warn',
      ...options.config,
    }),
  );
  const log: Cluster['log'] = [];
  const instances: Instance[] = [];
  const proxy = await startProxy(() => instances.map((i) => i.url), log);

  const local: Record<string, string> = {
    '--host': '127.0.0.1',
    '--port': '0',
    '--issuer': proxy.url,
    '--store': store,
    '--resource': `${RESOURCE}=mcp:tools`,
    '--config': configPath,
  };
  const documented = documentedFlags();
  const args: string[] = [];
  for (let i = 0; i < documented.length; i++) {
    const flag = documented[i]!;
    if (!flag.startsWith('--')) throw new Error(`unexpected word ${flag} in the documented command`);
    const value = documented[i + 1]!;
    i++;
    args.push(flag, flag in local ? local[flag]! : value);
  }
  // The doc's exported variables, with local values: every instance gets the same at-rest key and, like separate
  // machines, a data directory of its own (so nothing is shared through a key file).
  const storeKey = randomBytes(32).toString('base64url');
  const exported = documentedExports();
  for (const name of ['GATEHOUSE_SUPERUSER_PASSWORD', 'GATEHOUSE_STORE_KEY']) {
    if (!exported.includes(name)) throw new Error(`docs/authorization-server.md: the block does not export ${name}`);
  }
  const env = (n: number) => ({
    GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD,
    GATEHOUSE_STORE_KEY: storeKey,
    GATEHOUSE_DATA_DIR: join(dir, `instance-${n}`),
  });
  // As the doc says: one instance first (it creates the keys), then the rest.
  instances.push(await startInstance(args, env(0)));
  instances.push(
    ...(await Promise.all(Array.from({ length: (options.count ?? 3) - 1 }, (_, i) => startInstance(args, env(i + 1))))),
  );

  const agents: Agent[] = [];
  return {
    url: proxy.url,
    store,
    instances,
    log,
    clientFetch(address) {
      // Connections from `address`, so the proxy sees a distinct client (undici ignores connect.localAddress).
      const agent = new Agent({
        connect: (opts, callback) => {
          const socket = connectSocket({ host: opts.hostname, port: Number(opts.port), localAddress: address });
          socket.once('connect', () => callback(null, socket));
          socket.once('error', (error) => callback(error, null));
        },
      });
      agents.push(agent);
      return ((input: string | URL, init?: RequestInit) =>
        undiciFetch(input, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch;
    },
    admin: (adminArgs) =>
      cli(['admin', ...adminArgs, '--store', store], {
        GATEHOUSE_DATA_DIR: join(dir, 'admin'),
        GATEHOUSE_STORE_KEY: storeKey,
      }),
    async close() {
      for (const instance of instances) instance.process.kill('SIGTERM');
      await Promise.all(
        instances.map((i) => (i.process.exitCode === null ? new Promise((r) => i.process.once('exit', r)) : null)),
      );
      await Promise.all(agents.map((a) => a.close()));
      proxy.server.closeAllConnections();
      await new Promise((r) => proxy.server.close(r));
      await dropStore(backend, suffix, table);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Deletes every key under `prefix` in the shared Redis. */
export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const { createClient } = await import('@redis/client');
  const client = createClient({ url: 'redis://127.0.0.1:6379' });
  await client.connect();
  for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) {
    if (keys.length) await client.del(keys);
  }
  await client.close();
}

/** Removes what the cluster wrote: its Redis keys, or its PostgreSQL tables. */
async function dropStore(backend: 'redis' | 'postgres', suffix: string, table: string): Promise<void> {
  if (backend === 'redis') return deleteRedisPrefix(`gh-deploy-${suffix}:`);
  const pg = await import('pg');
  const pool = new pg.default.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres', max: 1 });
  await pool.query(`DROP TABLE IF EXISTS ${table}, ${table}_login_limits`);
  await pool.end();
}

/** Redeems the code of an authorization callback (PKCE verifier, resource) at `server`'s token endpoint. */
export function redeemCode(
  server: { url: string },
  grant: { callback: URL | undefined; redirectUri: string; verifier: string; clientId: string; resource: string },
) {
  return token(server, {
    grant_type: 'authorization_code',
    code: grant.callback?.searchParams.get('code') ?? '',
    redirect_uri: grant.redirectUri,
    code_verifier: grant.verifier,
    client_id: grant.clientId,
    resource: grant.resource,
  });
}
