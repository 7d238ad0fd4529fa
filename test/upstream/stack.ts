import type { IncomingMessage, ServerResponse } from 'node:http';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import type { Logger } from 'pino';
import { type AuthorizationServer, createAuthorizationServer } from '../../src/authorization-server/index.js';
import type { UpstreamProvider, UpstreamResource } from '../../src/authorization-server/upstream/index.js';
import { TOKEN_EXCHANGE_GRANT_TYPE } from '../../src/oauth/index.js';
import { createGrant, TokenExchangeClient } from '../../src/server/grant.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import { captureLogs, engine } from './helpers.js';

export const MCP_SERVER = { id: 'mcp-server', secret: 'mcp-server-secret-that-is-long-enough' };

function slot() {
  let target: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  return {
    listener: (req: IncomingMessage, res: ServerResponse) => {
      if (target) target(req, res);
      else {
        res.writeHead(503);
        res.end();
      }
    },
    set(next: (req: IncomingMessage, res: ServerResponse) => void) {
      target = next;
    },
  };
}

/** What the `upstream_me` tool returns: the upstream user, or the resource error from the AccessContext. */
export interface UpstreamMe {
  ok: boolean;
  user?: Record<string, unknown>;
  error?: { error: string; message: string; status?: number };
  /** The HTTP status of the upstream's user endpoint. */
  status?: number;
}

export interface UpstreamSetup {
  providers: UpstreamProvider[];
  resources: UpstreamResource[];
  /** The resource the tool asks `grant()` for. */
  apiResource: string;
  /** The upstream endpoint the tool reads with the exchanged token. */
  userEndpoint: string;
  /** More upstream resources the MCP server may exchange toward. */
  extraTargets?: string[];
}

export interface UpstreamStack {
  issuer: string;
  mcpUrl: string;
  as: AuthorizationServer;
  setup: ReturnType<typeof engine>;
  /** Everything the authorization server logged. */
  asLogs: ReturnType<typeof captureLogs>;
  /** The MCP server's token-exchange client (`clear()` forgets cached exchanges). */
  exchanger: TokenExchangeClient;
  close(): Promise<void>;
}

/**
 * Gatehouse (authorization server with upstream identity) plus an MCP server whose `upstream_me` tool calls
 * `grant(apiResource)` and reads `userEndpoint` with the exchanged (upstream) token. Both on loopback.
 */
export async function startUpstreamStack(options: {
  /** Called with the issuer once its port is known: the upstreams, their resources, and what the tool reads. */
  upstream: (issuer: string) => Promise<UpstreamSetup> | UpstreamSetup;
  now?: () => number;
  localLogin?: boolean;
  autoUpstream?: string;
  authenticator?: Parameters<typeof createAuthorizationServer>[0]['authenticator'];
  logger?: Logger;
}): Promise<UpstreamStack> {
  const asSlot = slot();
  const mcpSlot = slot();
  const servers: RunningServer[] = [
    await listen(asSlot.listener, { port: 0 }),
    await listen(mcpSlot.listener, { port: 0 }),
  ];
  const [asServer, mcpServer] = servers as [RunningServer, RunningServer];
  const issuer = asServer.url;
  const mcpUrl = `${mcpServer.url}/mcp`;
  const upstream = await options.upstream(issuer);
  const setup = engine({
    issuer,
    providers: upstream.providers,
    resources: upstream.resources,
    ...(options.now && { now: options.now }),
  });
  const asLogs = captureLogs();
  const as = await createAuthorizationServer({
    issuer,
    authenticator: options.authenticator ?? { authenticate: async () => undefined },
    localLogin: options.localLogin ?? false,
    ...(options.autoUpstream && { autoUpstream: options.autoUpstream }),
    upstream: setup.identity,
    resources: [{ resource: mcpUrl, scopes: ['mcp:tools'] }],
    clients: [
      {
        client_id: MCP_SERVER.id,
        client_secret: MCP_SERVER.secret,
        grant_types: [TOKEN_EXCHANGE_GRANT_TYPE],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    tokenExchange: [
      {
        clientId: MCP_SERVER.id,
        from: [mcpUrl],
        to: [upstream.apiResource, ...(upstream.extraTargets ?? [])].map((resource) => ({ resource, scopes: [] })),
      },
    ],
    refreshTokenGraceSeconds: 0,
    logger: options.logger ?? asLogs.logger,
  });
  asSlot.set(as.listener);

  const exchanger = new TokenExchangeClient({
    issuer,
    credentials: { clientId: MCP_SERVER.id, clientSecret: MCP_SERVER.secret },
  });
  const grant = createGrant(exchanger);
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'upstream-tools', version: '1.0.0' });
    server.registerTool(
      'upstream_me',
      { description: "Reads the user's upstream profile with their own upstream token" },
      grant(upstream.apiResource)(async (_ctx, access) => {
        let result: UpstreamMe;
        const error = access.getResourceError(upstream.apiResource);
        if (error) result = { ok: false, error: { error: error.error, message: error.message, status: error.status } };
        else {
          const response = await fetch(upstream.userEndpoint, {
            headers: { authorization: `Bearer ${access.access(upstream.apiResource).accessToken}` },
          });
          result = {
            ok: response.ok,
            status: response.status,
            user: response.ok ? ((await response.json()) as Record<string, unknown>) : undefined,
          };
        }
        return {
          content: [{ type: 'text' as const, text: JSON.stringify(result) }],
          structuredContent: result as unknown as Record<string, unknown>,
        };
      }),
    );
    return server;
  });
  mcpSlot.set(
    toNodeListener(
      protect(mcp, {
        resource: mcpUrl,
        authorizationServers: [issuer],
        requiredScopes: ['mcp:tools'],
        verifier: jwtVerifier({ issuer, jwksUri: `${issuer}/jwks`, audience: mcpUrl }),
      }),
    ),
  );
  return {
    issuer,
    mcpUrl,
    as,
    setup,
    asLogs,
    exchanger,
    close: async () => {
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}
