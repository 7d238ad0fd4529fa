import { spawn } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createInterface } from 'node:readline';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import type { AuthorizationServer } from '../../src/authorization-server/server.js';
import { createAuthorizationServer } from '../../src/authorization-server/server.js';
import { staticUsers } from '../../src/authorization-server/users.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';

export { buildClientForChildren, temporaryDirectory } from '../client/oauth-helpers.js';

/** A real Gatehouse authorization server and protected MCP server on loopback, counting what the AS sees. */
export interface InteropStack {
  issuer: string;
  mcpUrl: string;
  as: AuthorizationServer;
  /** Successful grants at the token endpoint, by grant type. */
  grants: Record<string, number>;
  /** Every request the authorization server received (method and path). */
  asRequests: string[];
  close(): Promise<void>;
}

export async function startInteropStack(
  options: { accessTokenTtl?: number; refreshTokenGraceSeconds?: number } = {},
): Promise<InteropStack> {
  let asListener: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  let mcpListener: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const asRequests: string[] = [];
  const asServer: RunningServer = await listen((req, res) => {
    asRequests.push(`${req.method} ${req.url}`);
    asListener!(req, res);
  });
  const mcpServer: RunningServer = await listen((req, res) => mcpListener!(req, res));
  const issuer = asServer.url;
  const mcpUrl = `${mcpServer.url}/mcp`;
  const as = await createAuthorizationServer({
    issuer,
    authenticator: await staticUsers({ demo: 'demo' }),
    resources: [{ resource: mcpUrl, scopes: ['mcp:tools'], accessTokenTtl: options.accessTokenTtl ?? 3600 }],
    ...(options.refreshTokenGraceSeconds !== undefined
      ? { refreshTokenGraceSeconds: options.refreshTokenGraceSeconds }
      : {}),
  });
  const grants: Record<string, number> = {};
  as.provider.on('grant.success', (ctx: { oidc: { params?: Record<string, unknown> } }) => {
    const type = String(ctx.oidc.params?.['grant_type'] ?? 'unknown');
    grants[type] = (grants[type] ?? 0) + 1;
  });
  asListener = as.listener;
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'interop', version: '0.1.0' });
    server.registerTool('whoami', { description: 'Returns the caller.' }, async (ctx) => {
      const subject = (ctx.http?.authInfo?.extra?.['subject'] as string | undefined) ?? null;
      return { content: [{ type: 'text', text: JSON.stringify({ subject }) }], structuredContent: { subject } };
    });
    return server;
  });
  mcpListener = toNodeListener(
    protect(mcp, {
      resource: mcpUrl,
      authorizationServers: [issuer],
      requiredScopes: ['mcp:tools'],
      verifier: jwtVerifier({ issuer, jwksUri: `${issuer}/jwks`, audience: mcpUrl }),
    }),
  );
  return {
    issuer,
    mcpUrl,
    as,
    grants,
    asRequests,
    close: async () => {
      await Promise.all([asServer.close(), mcpServer.close()]);
    },
  };
}

/** A child process speaking line-delimited JSON on stdout, driven by lines on stdin. */
export interface Child {
  next(): Promise<Record<string, unknown>>;
  send(line: string): void;
  exited: Promise<number | null>;
  stderr(): string;
}

export function startChild(script: URL, args: string[]): Child {
  const proc = spawn(process.execPath, [script.pathname, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (c) => (err += c));
  const lines = createInterface({ input: proc.stdout });
  const queue: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else queue.push(line);
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    next: () =>
      new Promise((resolve, reject) => {
        const line = queue.shift();
        if (line !== undefined) return resolve(JSON.parse(line));
        waiting.push((l) => resolve(JSON.parse(l)));
        exited.then((code) => reject(new Error(`child exited (${code}): ${err}`)));
      }),
    send: (line) => proc.stdin.write(`${line}\n`),
    exited,
    stderr: () => err,
  };
}
