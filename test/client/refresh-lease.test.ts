// Single-flight refresh across machines: client processes that share a Redis or PostgreSQL token store but no
// filesystem (own HOME, own lock directory) spend a rotating refresh token once, through the store's lease.
// The authorization server is `gatehouse serve` behind a counting proxy (its issuer), the MCP server `protect()`
// around an SDK server; every refresh request the authorization server gets is counted at that proxy.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth } from '../../src/client/index.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import { type GatehouseStore, postgresStore, redisStore, TokenStorage } from '../../src/storage/index.js';
import { SERVE_USER, type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { POSTGRES_URL, REDIS_URL, removeFromServices, uniqueId } from '../storage/helpers.js';
import { buildClientForChildren, temporaryDirectory } from './oauth-helpers.js';

/** Access-token lifetime at the authorization server, and how early the clients refresh: tokens live 12 s for them. */
const ACCESS_TOKEN_TTL = 15;
const REFRESH_SKEW = 3;
const run = uniqueId('lease_refresh');

/** One refresh-token request the authorization server received (or that the proxy held back from it). */
interface RefreshRequest {
  at: number;
  status: number | 'held';
}

/**
 * A reverse proxy in front of `gatehouse serve`, whose URL is serve's issuer: it counts the refresh-token grants
 * and can hold one back (never answered, never forwarded), as if its sender died mid-refresh.
 */
class CountingProxy {
  readonly refreshes: RefreshRequest[] = [];
  codeGrants = 0;
  target = '';
  #server: Server;
  #hold: ((at: number) => void) | undefined;
  #held: ServerResponse | undefined;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<CountingProxy> {
    let proxy: CountingProxy | undefined;
    const server = createServer((req, res) => proxy!.handle(req, res));
    proxy = new CountingProxy(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Resolves with the time the next refresh request arrives; that one is held, not forwarded. */
  holdNextRefresh(): Promise<number> {
    return new Promise((resolve) => {
      this.#hold = resolve;
    });
  }

  dropHeld(): void {
    this.#held?.socket?.destroy();
    this.#held = undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const grant = req.method === 'POST' ? new URLSearchParams(body.toString('utf8')).get('grant_type') : null;
    if (grant === 'authorization_code') this.codeGrants++;
    const refresh: RefreshRequest | undefined = grant === 'refresh_token' ? { at: Date.now(), status: 0 } : undefined;
    if (refresh) this.refreshes.push(refresh);
    if (refresh && this.#hold) {
      refresh.status = 'held';
      this.#held = res;
      this.#hold(refresh.at);
      this.#hold = undefined;
      return;
    }
    const target = new URL(this.target);
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        if (refresh) refresh.status = answer.statusCode ?? 0;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    upstream.end(body);
  }

  close(): Promise<void> {
    this.dropHeld();
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

let proxy: CountingProxy;
let serve: ServeProcess;
let mcp: RunningServer;
let mcpUrl: string;
let src: string;
const opened: GatehouseStore[] = [];

beforeAll(async () => {
  proxy = await CountingProxy.start();
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  mcp = await listen((req, res) => handler!(req, res));
  mcpUrl = `${mcp.url}/mcp`;
  serve = await startServeProcess(['--issuer', proxy.url, '--resource', `${mcpUrl}=mcp:tools,ttl=${ACCESS_TOKEN_TTL}`]);
  proxy.target = serve.url;
  const metadata = (await (await fetch(`${proxy.url}/.well-known/oauth-authorization-server`)).json()) as {
    jwks_uri: string;
  };
  const server = createMcpHandler(() => {
    const sdk = new McpServer({ name: 'lease-test', version: '0.1.0' });
    sdk.registerTool('whoami', { description: 'Returns the caller.' }, async (ctx) => {
      const subject = (ctx.http?.authInfo?.extra?.['subject'] as string | undefined) ?? null;
      return { content: [{ type: 'text', text: JSON.stringify({ subject }) }], structuredContent: { subject } };
    });
    return sdk;
  });
  handler = toNodeListener(
    protect(server, {
      resource: mcpUrl,
      authorizationServers: [proxy.url],
      requiredScopes: ['mcp:tools'],
      verifier: jwtVerifier({ issuer: proxy.url, jwksUri: metadata.jwks_uri, audience: mcpUrl }),
    }),
  );
  src = await buildClientForChildren();
}, 180_000);

afterAll(async () => {
  await Promise.all(opened.map((store) => store.close()));
  await Promise.all([serve?.close(), mcp?.close(), proxy?.close()]);
  await removeFromServices({ redisPrefix: `gatehouse-test:${run}:`, tables: [`${run}_kv`, `${run}_kv_lease`] });
});

/** Where the clients share tokens: a Redis key prefix, or a PostgreSQL table, and a namespace, all new per test. */
type StoreChoice = { namespace: string; url: string } & (
  | { kind: 'redis'; prefix: string }
  | { kind: 'postgres'; table: string }
);

function storeChoice(kind: 'redis' | 'postgres'): StoreChoice {
  const namespace = `tokens-${randomUUID()}`;
  return kind === 'redis'
    ? { kind, url: REDIS_URL, prefix: `gatehouse-test:${run}:`, namespace }
    : { kind, url: POSTGRES_URL, table: `${run}_kv`, namespace };
}

function openStore(choice: StoreChoice): GatehouseStore {
  const store =
    choice.kind === 'redis'
      ? redisStore(choice.url, { prefix: choice.prefix, namespace: choice.namespace })
      : postgresStore(choice.url, { table: choice.table, namespace: choice.namespace });
  opened.push(store);
  return store;
}

/** Logs in once (headless, through the proxy) into the shared store; returns the subject and the token's expiry. */
async function loginInto(choice: StoreChoice): Promise<{ subject: string; expiresAt: number }> {
  const storage = new TokenStorage(openStore(choice));
  const locks = await temporaryDirectory('lease-login-locks');
  const oauth = new OAuth({ mcpUrl, tokenStorage: storage, login: SERVE_USER, lockDirectory: locks.path });
  await using client = new Client(mcpUrl, { auth: oauth });
  const subject = (await client.callTool<{ subject: string }>('whoami')).data.subject;
  await locks.remove();
  return { subject, expiresAt: (await storage.getTokens(mcpUrl))!.expires_at! };
}

interface Tally {
  ok: number;
  failed: number;
  refreshed: number;
  errors: string[];
}

/**
 * A client process with its own HOME and lock directory: nothing shared with its siblings but the token store.
 * It prints `started`, then runs one phase of calls per {@link go} (printing `done <phase>`), then its tally.
 */
class ChildClient {
  readonly #process: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
  #stdout = '';
  #stderr = '';

  constructor(home: string, config: Record<string, unknown>) {
    const child = spawn(
      process.execPath,
      [new URL('./fixtures/lease-refresh-child.mjs', import.meta.url).pathname, src, JSON.stringify(config)],
      { env: { ...process.env, HOME: home, TMPDIR: home, GATEHOUSE_STORE: home }, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.#process = child;
    child.stdout.on('data', (chunk) => (this.#stdout += chunk));
    child.stderr.on('data', (chunk) => (this.#stderr += chunk));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Resolves once the process printed a line starting with `prefix` (that line); rejects if it exits first. */
  printed(prefix: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.#stdout.split('\n').find((l) => l.startsWith(prefix));
        if (line === undefined) return false;
        this.#process.stdout.off('data', check);
        resolve(line);
        return true;
      };
      if (check()) return;
      this.#process.stdout.on('data', check);
      void this.exited.then((code) => {
        this.#process.stdout.off('data', check);
        reject(new Error(`client process exited with ${code} before printing ${prefix}:\n${this.#stderr}`));
      });
    });
  }

  async tally(): Promise<Tally> {
    return JSON.parse(await this.printed('{')) as Tally;
  }

  /** Starts the next phase of calls; `subject` is who the calls must come back as. */
  go(subject: string): void {
    this.#process.stdin.write(`${subject}\n`);
  }

  kill(): void {
    this.#process.kill('SIGKILL');
  }

  stderr(): string {
    return this.#stderr;
  }
}

/** Resolves `promise`, or rejects naming what did not happen within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what()}`)), ms).unref()),
  ]);
}

async function startChildren(
  count: number,
  config: (index: number) => Record<string, unknown>,
): Promise<{ children: ChildClient[]; cleanup: () => Promise<void> }> {
  const homes = await Promise.all(Array.from({ length: count }, () => temporaryDirectory('lease-child')));
  const children = homes.map((home, i) => new ChildClient(home.path, { ...config(i), lockDirectory: home.path }));
  return {
    children,
    cleanup: async () => {
      for (const child of children) child.kill();
      await Promise.all(homes.map((home) => home.remove()));
    },
  };
}

const sleepUntil = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms - Date.now())));

/** Waits until every child printed a line starting with `prefix`, naming the laggards' stderr on timeout. */
function allPrinted(children: ChildClient[], prefix: string, ms = 60_000): Promise<string[]> {
  return within(
    Promise.all(children.map((child) => child.printed(prefix))),
    ms,
    () => `every child printing ${prefix}\n${children.map((c) => c.stderr()).join('\n')}`,
  );
}

describe.each(['redis', 'postgres'] as const)('three client processes sharing a %s token store', (kind) => {
  it('50 calls each across an access-token expiry: exactly 1 refresh request at the authorization server, 0 failed calls', async () => {
    const shared = storeChoice(kind);
    const { children, cleanup } = await startChildren(3, () => ({
      store: shared,
      mcpUrl,
      refreshSkewSeconds: REFRESH_SKEW,
      phases: [25, 25],
    }));
    try {
      // Loaded first, so that the token's short life is spent on calls, not on starting Node.
      await allPrinted(children, 'started');
      const { subject, expiresAt } = await loginInto(shared);
      const refreshesBefore = proxy.refreshes.length;
      const codeGrantsBefore = proxy.codeGrants;
      for (const child of children) child.go(subject);
      await allPrinted(children, 'done 0');
      expect(proxy.refreshes.length).toBe(refreshesBefore); // 25 calls each on the first token
      // Past the expiry the children see (expires_at - skew), all three at once.
      await sleepUntil((expiresAt - REFRESH_SKEW) * 1000 + 500);
      for (const child of children) child.go(subject);
      const tallies = await within(
        Promise.all(children.map((child) => child.tally())),
        60_000,
        () => `children done\n${children.map((c) => c.stderr()).join('\n')}`,
      );
      expect(tallies.map((t) => t.errors)).toEqual([[], [], []]);
      expect(tallies.map((t) => t.ok)).toEqual([50, 50, 50]);
      expect(proxy.refreshes.slice(refreshesBefore).map((r) => r.status)).toEqual([200]);
      expect(tallies.reduce((sum, t) => sum + t.refreshed, 0)).toBe(1);
      expect(proxy.codeGrants).toBe(codeGrantsBefore); // nobody logged in again
    } finally {
      await cleanup();
    }
  }, 180_000);

  it('a holder killed (SIGKILL) mid-refresh blocks the others only until its lease expires', async () => {
    const LEASE_MS = 4000;
    const shared = storeChoice(kind);
    const { children, cleanup } = await startChildren(3, (i) => ({
      store: shared,
      mcpUrl,
      refreshSkewSeconds: REFRESH_SKEW,
      refreshLeaseMs: LEASE_MS,
      phases: [1, i === 0 ? 1 : 10],
    }));
    const [victim, ...others] = children as [ChildClient, ChildClient, ChildClient];
    try {
      await allPrinted(children, 'started');
      const { subject, expiresAt } = await loginInto(shared);
      const refreshesBefore = proxy.refreshes.length;
      for (const child of children) child.go(subject);
      await allPrinted(children, 'done 0');
      await sleepUntil((expiresAt - REFRESH_SKEW) * 1000 + 500);
      // The victim takes the lease and sends its refresh, which the authorization server never sees.
      const held = proxy.holdNextRefresh();
      victim.go(subject);
      const heldAt = await within(held, 30_000, () => `the victim's refresh\n${victim.stderr()}`);
      for (const child of others) child.go(subject);
      await new Promise((resolve) => setTimeout(resolve, 1000)); // the others now wait on the victim's lease
      victim.kill();
      await victim.exited;
      proxy.dropHeld();
      const tallies = await within(
        Promise.all(others.map((child) => child.tally())),
        60_000,
        () => `survivors done\n${others.map((c) => c.stderr()).join('\n')}`,
      );
      expect(tallies.map((t) => t.errors)).toEqual([[], []]);
      expect(tallies.map((t) => t.ok)).toEqual([11, 11]);
      const refreshes = proxy.refreshes.slice(refreshesBefore);
      expect(refreshes.map((r) => r.status)).toEqual(['held', 200]);
      // The survivors waited for the dead holder's lease to expire (nobody refreshed beside it) and no longer:
      // the next refresh went out once the lease ran out, give or take polling and a loaded machine.
      const waited = refreshes[1]!.at - heldAt;
      expect(waited).toBeGreaterThanOrEqual(LEASE_MS - 1500);
      expect(waited).toBeLessThanOrEqual(LEASE_MS + 3000);
    } finally {
      await cleanup();
    }
  }, 180_000);
});
