import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import {
  type AuthorizationServer,
  type AuthorizationServerOptions,
  createAuthorizationServer,
} from '../../src/authorization-server/server.js';
import { staticUsers } from '../../src/authorization-server/users.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A real authorization server and protected MCP server on loopback, with a configurable token lifetime. */
export interface OAuthTestStack {
  issuer: string;
  /** The first MCP server; `mcpUrls` lists all of them (each on its own origin). */
  mcpUrl: string;
  mcpUrls: string[];
  /** The `Authorization` header of every request each MCP server received (`''` when absent), by MCP URL. */
  authorizationHeaders: Map<string, string[]>;
  username: string;
  password: string;
  /** The authorization server, for tests that reach into its storage (e.g. deleting a client). */
  as: AuthorizationServer;
  /** Successful grants at the token endpoint, by grant type. */
  grants: Record<string, number>;
  /** Every request the authorization server received (method and path). */
  asRequests: string[];
  close(): Promise<void>;
}

/**
 * Answers a request before the real server does (returns `true` when it did): a test's way to make a real server
 * misbehave in one respect, e.g. not serve one metadata document.
 */
export type FrontHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

/** A private key and certificate (PEM) for a test https server. */
export interface TlsIdentity {
  key: string;
  cert: string;
}

/**
 * Starts the stack. With `tls`, the authorization server and the MCP servers serve https with that certificate
 * (the verifier in this process reads the keys over a plain loopback listener, as it does not trust the test CA).
 */
export async function startOAuthTestStack(
  options: {
    accessTokenTtl?: number;
    refreshTokenGraceSeconds?: number;
    servers?: number;
    front?: { mcp?: FrontHandler; as?: FrontHandler };
    tls?: TlsIdentity;
    /** Pre-registered clients and the registration policy of the authorization server. */
    authorizationServer?: Pick<AuthorizationServerOptions, 'clients' | 'registration'>;
  } = {},
): Promise<OAuthTestStack> {
  let asListener: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const asRequests: string[] = [];
  const asServer: RunningServer = await listen(
    (req, res) => {
      asRequests.push(`${req.method} ${req.url}`);
      if (options.front?.as?.(req, res)) return;
      asListener!(req, res);
    },
    { tls: options.tls },
  );
  const keysServer = options.tls ? await listen((req, res) => asListener!(req, res)) : undefined;
  const issuer = asServer.url;
  const authorizationHeaders = new Map<string, string[]>();
  const mcpListeners = new Map<string, (req: IncomingMessage, res: ServerResponse) => void>();
  const mcpServers: RunningServer[] = [];
  for (let i = 0; i < (options.servers ?? 1); i++) {
    let url = '';
    const server = await listen(
      (req, res) => {
        authorizationHeaders.get(url)!.push(req.headers.authorization ?? '');
        if (options.front?.mcp?.(req, res)) return;
        mcpListeners.get(url)!(req, res);
      },
      { tls: options.tls },
    );
    url = `${server.url}/mcp`;
    authorizationHeaders.set(url, []);
    mcpServers.push(server);
  }
  const mcpUrls = [...authorizationHeaders.keys()];
  const ttl = options.accessTokenTtl ?? 3600;
  const authorizationServer = await createAuthorizationServer({
    issuer,
    authenticator: await staticUsers({ demo: 'demo' }),
    resources: mcpUrls.map((resource) => ({ resource, scopes: ['mcp:tools'], accessTokenTtl: ttl })),
    ...options.authorizationServer,
    ...(options.refreshTokenGraceSeconds !== undefined
      ? { refreshTokenGraceSeconds: options.refreshTokenGraceSeconds }
      : {}),
  });
  const grants: Record<string, number> = {};
  authorizationServer.provider.on('grant.success', (ctx: { oidc: { params?: Record<string, unknown> } }) => {
    const type = String(ctx.oidc.params?.['grant_type'] ?? 'unknown');
    grants[type] = (grants[type] ?? 0) + 1;
  });
  asListener = authorizationServer.listener;
  for (const mcpUrl of mcpUrls) {
    const mcp = createMcpHandler(() => {
      const server = new McpServer({ name: 'oauth-test', version: '0.1.0' });
      server.registerTool('whoami', { description: 'Returns the caller.' }, async (ctx) => {
        const subject = (ctx.http?.authInfo?.extra?.['subject'] as string | undefined) ?? null;
        return { content: [{ type: 'text', text: JSON.stringify({ subject }) }], structuredContent: { subject } };
      });
      return server;
    });
    mcpListeners.set(
      mcpUrl,
      toNodeListener(
        protect(mcp, {
          resource: mcpUrl,
          authorizationServers: [issuer],
          requiredScopes: ['mcp:tools'],
          verifier: jwtVerifier({ issuer, jwksUri: `${keysServer?.url ?? issuer}/jwks`, audience: mcpUrl }),
        }),
      ),
    );
  }
  return {
    issuer,
    mcpUrl: mcpUrls[0]!,
    mcpUrls,
    authorizationHeaders,
    username: 'demo',
    password: 'demo',
    as: authorizationServer,
    grants,
    asRequests,
    close: async () => {
      await Promise.all([asServer.close(), keysServer?.close(), ...mcpServers.map((server) => server.close())]);
    },
  };
}

export async function temporaryDirectory(name: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `gatehouse-${name}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

let built: Promise<string> | undefined;

/** The files child processes import: the whole client (Client, OAuth, ...) and what it depends on. */
const CHILD_SOURCES = async (): Promise<string[]> => {
  const files: string[] = [];
  for (const dir of ['client', 'oauth', 'storage']) {
    for (const f of await readdir(join(repo, 'src', dir), { recursive: true })) {
      if (f.endsWith('.ts')) files.push(join(dir, f));
    }
  }
  return files;
};

/**
 * Transpiles our client and its dependencies from `src/` for child processes, which run plain Node. Returns the
 * directory that mirrors `src/` (import `<dir>/client/oauth.js`). Independent of `dist/`, which may be stale while
 * the tree is being edited; the output is keyed by a hash of the sources and reused across runs and processes.
 */
export function buildClientForChildren(): Promise<string> {
  built ??= (async () => {
    const files = await CHILD_SOURCES();
    const sources = new Map<string, string>();
    const hash = createHash('sha256');
    for (const relative of files) {
      const text = await readFile(join(repo, 'src', relative), 'utf8');
      sources.set(relative, text);
      hash.update(relative).update('\0').update(text).update('\0');
    }
    const out = join(repo, 'node_modules', '.cache', `gatehouse-oauth-fixture-${hash.digest('hex').slice(0, 16)}`);
    if (existsSync(join(out, '.complete'))) return out;
    const ts = (await import('typescript')).default;
    // Build aside and rename into place, so a concurrent run never imports a half-written file.
    const temporary = `${out}.${process.pid}.tmp`;
    for (const [relative, source] of sources) {
      const { outputText } = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
        fileName: relative,
      });
      const target = join(temporary, relative.replace(/\.ts$/, '.js'));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, outputText);
    }
    await writeFile(join(temporary, '.complete'), '');
    try {
      await rename(temporary, out);
    } catch {
      await rm(temporary, { recursive: true, force: true }); // another process got there first
    }
    return out;
  })();
  return built;
}
