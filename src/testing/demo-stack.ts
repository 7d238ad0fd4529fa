import type { IncomingMessage, ServerResponse } from 'node:http';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import type { Configuration } from 'oidc-provider';
import { type AuthorizationServer, createAuthorizationServer } from '../authorization-server/server.js';
import { staticUsers } from '../authorization-server/users.js';
import { jwtVerifier } from '../server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../server/node.js';
import { protect } from '../server/protect.js';

/** Options of {@link startDemoStack}. */
export interface DemoStackOptions {
  /** Port of the authorization server; the MCP server takes the next one. Default: random free ports. */
  port?: number;
  /** The demo user's credentials. Default `demo` / `demo`. */
  username?: string;
  password?: string;
  /** Extra pre-registered clients for the authorization server. */
  clients?: Configuration['clients'];
  /** Extra resources the authorization server issues tokens for (besides the MCP server). */
  extraResources?: string[];
}

/** A running authorization server and a protected MCP server with a `whoami` tool. */
export interface DemoStack {
  issuer: string;
  /** The MCP endpoint, e.g. `http://127.0.0.1:40123/mcp`. */
  mcpUrl: string;
  username: string;
  password: string;
  authorizationServer: AuthorizationServer;
  close(): Promise<void>;
}

/** Scope the demo MCP server requires. */
export const DEMO_SCOPE = 'mcp:tools';

function deferredListener() {
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

/**
 * Starts the demo: an authorization server with one user, and an MCP server (SDK v2) whose `whoami` tool
 * returns the caller's subject and scopes, protected by JWTs whose audience must be the MCP server's URL.
 * Everything listens on loopback.
 *
 * @example
 * ```ts
 * import { startDemoStack } from 'gatehouse/testing';
 *
 * const stack = await startDemoStack();
 * console.log(stack.mcpUrl); // http://127.0.0.1:<port>/mcp
 * await stack.close();
 * ```
 */
export async function startDemoStack(options: DemoStackOptions = {}): Promise<DemoStack> {
  const username = options.username ?? 'demo';
  const password = options.password ?? 'demo';
  const asSlot = deferredListener();
  const mcpSlot = deferredListener();
  const servers: RunningServer[] = [];
  try {
    servers.push(await listen(asSlot.listener, { port: options.port ?? 0 }));
    servers.push(await listen(mcpSlot.listener, { port: options.port ? options.port + 1 : 0 }));
  } catch (error) {
    await Promise.all(servers.map((s) => s.close()));
    throw error;
  }
  const [asServer, mcpServer] = servers as [RunningServer, RunningServer];
  const issuer = asServer.url;
  const mcpUrl = `${mcpServer.url}/mcp`;

  const authorizationServer = await createAuthorizationServer({
    issuer,
    authenticator: await staticUsers({ [username]: password }),
    resources: [
      { resource: mcpUrl, scopes: [DEMO_SCOPE] },
      ...(options.extraResources ?? []).map((resource) => ({ resource, scopes: [DEMO_SCOPE] })),
    ],
    clients: options.clients,
  });
  asSlot.set(authorizationServer.listener);

  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'gatehouse-demo', version: '0.1.0' });
    server.registerTool(
      'whoami',
      { description: "Returns the caller's subject and scopes, as the resource server verified them." },
      async (ctx) => {
        const authInfo = ctx.http?.authInfo;
        const identity = {
          subject: (authInfo?.extra?.['subject'] as string | undefined) ?? null,
          scopes: authInfo?.scopes ?? [],
          clientId: authInfo?.clientId ?? null,
        };
        return { content: [{ type: 'text', text: JSON.stringify(identity) }], structuredContent: identity };
      },
    );
    return server;
  });
  mcpSlot.set(
    toNodeListener(
      protect(mcp, {
        resource: mcpUrl,
        authorizationServers: [issuer],
        requiredScopes: [DEMO_SCOPE],
        resourceName: 'Gatehouse demo MCP server',
        verifier: jwtVerifier({ issuer, jwksUri: `${issuer}/jwks`, audience: mcpUrl }),
      }),
    ),
  );

  return {
    issuer,
    mcpUrl,
    username,
    password,
    authorizationServer,
    close: async () => {
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}
