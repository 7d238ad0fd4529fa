import type { AuthorizationServerMetadata, ProtectedResourceMetadata } from '../oauth/metadata.js';
import { canonicalResourceUri } from '../oauth/resource-uri.js';
import type { ClientCredentials } from './client-auth.js';
import { discoverAuthorizationServer } from './discovery.js';
import { createGrant, type Grant, TokenExchangeClient } from './grant.js';
import { introspectionVerifier } from './introspection-verifier.js';
import { jwtVerifier } from './jwt-verifier.js';
import { type McpRequestHandler, type ProtectedHandler, type ProtectOptions, protect } from './protect.js';
import type { TokenVerifier } from './verifier.js';

/** Options of {@link createAuthProvider}. */
export interface AuthProviderOptions {
  /** The authorization server's issuer. */
  issuer: string;
  /** This MCP server's URL (its canonical resource URI). */
  resource: string | URL;
  /** A human-readable name, served as `resource_name`. */
  serverName?: string;
  /** This server's own client credentials at the AS, for token exchange (and introspection). */
  clientCredentials?: ClientCredentials;
  /** How to verify tokens: `jwt` (default, via the AS `jwks_uri`) or `introspection` (needs `clientCredentials`). */
  verification?: 'jwt' | 'introspection';
  /** Scopes every request needs. */
  requiredScopes?: string[];
}

/** The AS-derived pieces of a protected MCP server. */
export interface AuthProvider {
  readonly issuer: string;
  readonly resource: string;
  /** The AS metadata, as discovered. */
  readonly authorizationServerMetadata: AuthorizationServerMetadata;
  /** Verifies tokens for this resource. */
  readonly verifier: TokenVerifier;
  /** The RFC 9728 document `protect()` serves. */
  readonly metadata: ProtectedResourceMetadata;
  /** Delegated access for tools; throws on use when no `clientCredentials` were given. */
  readonly grant: Grant;
  /** `protect()` with everything above filled in; `options` adds to or overrides it. */
  protect(handler: McpRequestHandler, options?: Partial<ProtectOptions>): ProtectedHandler;
}

/**
 * One object for a protected MCP server (seed: Keycard's `AuthProvider`): discovers the AS metadata once, then
 * yields the verifier, the protected-resource metadata, `protect()` and `grant()`.
 *
 * @example
 * ```ts
 * import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
 * import { createAuthProvider } from 'gatehouse/server';
 *
 * const auth = await createAuthProvider({
 *   issuer: 'https://auth.example.com',
 *   resource: 'https://mcp.example.com/mcp',
 *   serverName: 'My MCP server',
 *   clientCredentials: { clientId: 'mcp-server', clientSecret: process.env.MCP_CLIENT_SECRET! },
 * });
 * const mcp = createMcpHandler(() => {
 *   const server = new McpServer({ name: 'my-server', version: '1.0.0' });
 *   server.registerTool('events', {}, auth.grant('https://calendar.example.com')(async (ctx, access) => ({
 *     content: [{ type: 'text', text: access.getStatus() }],
 *   })));
 *   return server;
 * });
 * export default { fetch: auth.protect(mcp) };
 * ```
 */
export async function createAuthProvider(options: AuthProviderOptions): Promise<AuthProvider> {
  const resource = canonicalResourceUri(options.resource);
  const asMetadata = await discoverAuthorizationServer(options.issuer);
  const credentials = options.clientCredentials;
  let verifier: TokenVerifier;
  if (options.verification === 'introspection') {
    if (!credentials || !asMetadata.introspection_endpoint) {
      throw new TypeError('createAuthProvider: introspection needs clientCredentials and an introspection_endpoint');
    }
    verifier = introspectionVerifier({
      endpoint: asMetadata.introspection_endpoint,
      credentials,
      issuer: options.issuer,
      audience: resource,
    });
  } else {
    if (!asMetadata.jwks_uri)
      throw new TypeError(`createAuthProvider: the metadata of ${options.issuer} has no jwks_uri`);
    verifier = jwtVerifier({ issuer: options.issuer, jwksUri: asMetadata.jwks_uri, audience: resource });
  }
  const grant: Grant = credentials
    ? createGrant(
        new TokenExchangeClient({
          issuer: options.issuer,
          tokenEndpoint: asMetadata.token_endpoint,
          credentials,
        }),
      )
    : () => {
        throw new TypeError('grant() needs clientCredentials in createAuthProvider()');
      };
  const base: ProtectOptions = {
    resource,
    authorizationServers: [options.issuer],
    verifier,
    requiredScopes: options.requiredScopes,
    resourceName: options.serverName,
  };
  const metadata = protect(async () => new Response(null), base).metadata;
  return {
    issuer: options.issuer,
    resource,
    authorizationServerMetadata: asMetadata,
    verifier,
    metadata,
    grant,
    protect: (handler, overrides = {}) => protect(handler, { ...base, ...overrides }),
  };
}
