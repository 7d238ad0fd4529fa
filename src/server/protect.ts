import { protectedResourceMetadataUrl } from '../oauth/discovery.js';
import { OAuthProtocolError } from '../oauth/errors.js';
import type { ProtectedResourceMetadata } from '../oauth/metadata.js';
import { canonicalResourceUri } from '../oauth/resource-uri.js';
import { formatWwwAuthenticate } from '../oauth/www-authenticate.js';
import { InsufficientScopeError, InvalidTokenError } from './errors.js';
import type { AuthInfo, TokenVerifier } from './verifier.js';

/** A web-standard request handler. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** The MCP handler `protect()` wraps: an SDK v2 `createMcpHandler()` result, or any function of that shape. */
export type McpRequestHandler =
  | ((request: Request, options: { authInfo: AuthInfo }) => Promise<Response>)
  | { fetch(request: Request, options?: { authInfo?: AuthInfo }): Promise<Response> };

/** Options of {@link protect}. */
export interface ProtectOptions {
  /** This server's canonical URL, e.g. `https://mcp.example.com/mcp`. Tokens must carry it as their audience. */
  resource: string | URL;
  /** Issuers of the authorization servers that may mint tokens for this resource. */
  authorizationServers: string[];
  /** Verifies bearer tokens, e.g. {@link jwtVerifier}. */
  verifier: TokenVerifier;
  /** Scopes every request needs. Missing ones answer 403 `insufficient_scope`. */
  requiredScopes?: string[];
  /** Scopes advertised in the metadata. Defaults to `requiredScopes`. */
  scopesSupported?: string[];
  /** A human-readable name for the metadata document. */
  resourceName?: string;
}

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, OPTIONS',
  'access-control-allow-headers': 'mcp-protocol-version, authorization',
  'access-control-max-age': '86400',
};

/**
 * Puts OAuth in front of an MCP handler. The returned fetch handler serves RFC 9728 protected-resource metadata
 * (at the path-inserted and root well-known URLs, with CORS), answers requests without a valid token with a 401
 * challenge that points at that metadata, refuses tokens minted for another audience, and hands the verified
 * identity to the MCP handler as `authInfo`.
 *
 * @example
 * ```ts
 * import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
 * import { jwtVerifier, protect } from 'gatehouse/server';
 *
 * const resource = 'https://mcp.example.com/mcp';
 * const mcp = createMcpHandler(() => new McpServer({ name: 'example', version: '1.0.0' }));
 * const fetchHandler = protect(mcp, {
 *   resource,
 *   authorizationServers: ['https://auth.example.com'],
 *   verifier: jwtVerifier({ issuer: 'https://auth.example.com', jwksUri: 'https://auth.example.com/jwks', audience: resource }),
 * });
 * ```
 */
export function protect(handler: McpRequestHandler, options: ProtectOptions): FetchHandler {
  const resource = canonicalResourceUri(options.resource);
  const metadataUrl = protectedResourceMetadataUrl(resource);
  const metadataPaths = new Set([
    new URL(metadataUrl).pathname,
    '/.well-known/oauth-protected-resource',
    '/.well-known/oauth-protected-resource/',
  ]);
  const metadata: ProtectedResourceMetadata = {
    resource,
    authorization_servers: options.authorizationServers,
    scopes_supported: options.scopesSupported ?? options.requiredScopes,
    bearer_methods_supported: ['header'],
    ...(options.resourceName ? { resource_name: options.resourceName } : {}),
  };
  const metadataBody = JSON.stringify(metadata);
  const requiredScopes = options.requiredScopes ?? [];
  const scopeParam = requiredScopes.length ? requiredScopes.join(' ') : undefined;
  const callMcp =
    typeof handler === 'function'
      ? handler
      : (request: Request, init: { authInfo: AuthInfo }) => handler.fetch(request, init);

  function challenge(error?: OAuthProtocolError): Response {
    const header = formatWwwAuthenticate('Bearer', {
      error: error?.error,
      error_description: error?.description,
      scope: error instanceof InsufficientScopeError ? error.requiredScopes.join(' ') : scopeParam,
      resource_metadata: metadataUrl,
    });
    const body = error ?? new InvalidTokenError('a bearer token is required');
    return body.toResponse({ 'www-authenticate': header });
  }

  return async function protectedHandler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (metadataPaths.has(url.pathname)) {
      if (request.method === 'OPTIONS') return new Response(null, { status: 204, headers: CORS_HEADERS });
      if (request.method === 'GET' || request.method === 'HEAD') {
        return new Response(request.method === 'HEAD' ? null : metadataBody, {
          headers: { 'content-type': 'application/json', 'cache-control': 'max-age=300', ...CORS_HEADERS },
        });
      }
      return new Response(null, { status: 405, headers: { allow: 'GET, HEAD, OPTIONS', ...CORS_HEADERS } });
    }

    const authorization = request.headers.get('authorization');
    if (!authorization) return challenge();
    const match = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i.exec(authorization);
    if (!match) return challenge(new InvalidTokenError('the Authorization header is not a Bearer token'));

    let authInfo: AuthInfo;
    try {
      authInfo = await options.verifier.verify(match[1]!);
    } catch (error) {
      if (error instanceof OAuthProtocolError) return challenge(error);
      return new OAuthProtocolError('server_error', 'token verification failed').toResponse();
    }
    if (authInfo.expiresAt !== undefined && authInfo.expiresAt * 1000 <= Date.now()) {
      return challenge(new InvalidTokenError('the token has expired'));
    }
    const missing = requiredScopes.filter((scope) => !authInfo.scopes.includes(scope));
    if (missing.length) return challenge(new InsufficientScopeError(requiredScopes));
    return callMcp(request, { authInfo: { ...authInfo, resourceMetadataUrl: metadataUrl } });
  };
}
