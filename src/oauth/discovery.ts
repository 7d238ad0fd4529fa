/**
 * Discovery URL builders, in the order the MCP authorization spec (2025-11-25) tells clients to try them.
 */

function splitUrl(value: string | URL): { origin: string; path: string } {
  const url = new URL(String(value));
  let path = url.pathname;
  while (path.endsWith('/')) path = path.slice(0, -1);
  return { origin: url.origin, path };
}

/**
 * RFC 9728 protected-resource metadata URLs for an MCP server URL: the path-inserted form first, then the root.
 *
 * @example
 * ```ts
 * import { protectedResourceMetadataUrls } from 'gatehouse/oauth';
 *
 * protectedResourceMetadataUrls('https://api.example.com/mcp');
 * // ['https://api.example.com/.well-known/oauth-protected-resource/mcp',
 * //  'https://api.example.com/.well-known/oauth-protected-resource']
 * ```
 */
export function protectedResourceMetadataUrls(serverUrl: string | URL): string[] {
  const { origin, path } = splitUrl(serverUrl);
  const root = `${origin}/.well-known/oauth-protected-resource`;
  return path ? [`${root}${path}`, root] : [root];
}

/** The RFC 9728 metadata URL a resource server advertises for itself (path-inserted form). */
export function protectedResourceMetadataUrl(resource: string | URL): string {
  return protectedResourceMetadataUrls(resource)[0]!;
}

/**
 * Authorization-server metadata URLs for an issuer, in spec order: RFC 8414 path-inserted, OIDC path-inserted,
 * OIDC path-appended; for an issuer without a path, RFC 8414 then OIDC at the root.
 *
 * @example
 * ```ts
 * import { authorizationServerMetadataUrls } from 'gatehouse/oauth';
 *
 * authorizationServerMetadataUrls('https://auth.example.com/tenant1');
 * // ['https://auth.example.com/.well-known/oauth-authorization-server/tenant1',
 * //  'https://auth.example.com/.well-known/openid-configuration/tenant1',
 * //  'https://auth.example.com/tenant1/.well-known/openid-configuration']
 * ```
 */
export function authorizationServerMetadataUrls(issuer: string | URL): string[] {
  const { origin, path } = splitUrl(issuer);
  if (!path) {
    return [`${origin}/.well-known/oauth-authorization-server`, `${origin}/.well-known/openid-configuration`];
  }
  return [
    `${origin}/.well-known/oauth-authorization-server${path}`,
    `${origin}/.well-known/openid-configuration${path}`,
    `${origin}${path}/.well-known/openid-configuration`,
  ];
}

/**
 * How long a resource server keeps an authorization server's JWKS before fetching it again (`jwtVerifier` in
 * `gatehouse/server`). A new signing key is published at least this long before it signs (see
 * `gatehouse admin keys rotate`), so a verifier that cached the JWKS just before a rotation knows the key in time.
 */
export const JWKS_CACHE_SECONDS = 600;
