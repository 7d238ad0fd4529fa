import { authorizationServerMetadataUrls } from '../oauth/discovery.js';
import { GatehouseError } from '../oauth/errors.js';
import { type AuthorizationServerMetadata, parseAuthorizationServerMetadata } from '../oauth/metadata.js';
import { assertSecureUrl } from '../oauth/resource-uri.js';

/**
 * Thrown when the authorization server's metadata cannot be found or does not match its issuer.
 *
 * @example
 * ```ts
 * try {
 *   await discoverAuthorizationServer('https://auth.example.com');
 * } catch (error) {
 *   if (error instanceof DiscoveryError && error.unavailable) scheduleRetry();
 * }
 * ```
 */
export class DiscoveryError extends GatehouseError {
  /** True when the AS could not be reached or answered with an error status (worth retrying later). */
  readonly unavailable: boolean;

  constructor(message: string, options: { cause?: unknown; unavailable?: boolean } = {}) {
    super(message, {
      code: 'ERR_AS_DISCOVERY',
      hint: 'Check that the issuer URL is exactly the authorization server’s issuer identifier and that it is reachable.',
      cause: options.cause,
    });
    this.unavailable = options.unavailable ?? false;
  }
}

/**
 * Fetches an authorization server's metadata (RFC 8414, then OpenID discovery, in spec order) and checks that
 * its `issuer` is the one asked for (RFC 8414 §3.3), so a misconfigured or hostile document cannot redirect
 * key lookups or token exchanges.
 *
 * @example
 * ```ts
 * import { discoverAuthorizationServer } from 'gatehouse/server';
 *
 * const metadata = await discoverAuthorizationServer('https://auth.example.com');
 * metadata.jwks_uri; // 'https://auth.example.com/jwks'
 * ```
 */
export async function discoverAuthorizationServer(
  issuer: string,
  options: { fetch?: typeof fetch } = {},
): Promise<AuthorizationServerMetadata> {
  assertSecureUrl(issuer, 'issuer');
  const fetchImpl = options.fetch ?? fetch;
  const failures: string[] = [];
  for (const url of authorizationServerMetadataUrls(issuer)) {
    let response: Response;
    try {
      response = await fetchImpl(url, { headers: { accept: 'application/json' }, redirect: 'error' });
    } catch (error) {
      throw new DiscoveryError(`cannot reach the authorization server at ${url}`, { cause: error, unavailable: true });
    }
    if (!response.ok) {
      await response.body?.cancel();
      failures.push(`${url}: HTTP ${response.status}`);
      continue;
    }
    const metadata = parseAuthorizationServerMetadata(await response.json(), url);
    if (metadata.issuer !== issuer) {
      throw new DiscoveryError(`the metadata at ${url} names issuer ${metadata.issuer}, expected ${issuer}`);
    }
    return metadata;
  }
  throw new DiscoveryError(`no authorization-server metadata for ${issuer} (${failures.join('; ')})`, {
    unavailable: true,
  });
}
