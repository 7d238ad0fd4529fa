import { createHash } from 'node:crypto';
import { OAuthProtocolError } from '../oauth/errors.js';
import { assertSecureUrl, canonicalResourceUri } from '../oauth/resource-uri.js';
import { authenticateClient, type ClientCredentials } from './client-auth.js';
import { InvalidTokenError } from './errors.js';
import { assertAudience, scopesOf } from './jwt-verifier.js';
import type { AuthInfo, TokenVerifier, VerifyContext } from './verifier.js';

/** Options of {@link introspectionVerifier}. */
export interface IntrospectionVerifierOptions {
  /** The AS introspection endpoint (RFC 7662), e.g. `https://auth.example.com/token/introspection`. */
  endpoint: string | URL;
  /** This resource server's client id at the AS. */
  clientId?: string;
  /** Its secret, sent with `client_secret_basic`. For other methods use `credentials`. */
  clientSecret?: string;
  /** Full client credentials (`client_secret_post`, `private_key_jwt`); overrides `clientId`/`clientSecret`. */
  credentials?: ClientCredentials;
  /** When set, the response's `iss` must equal it. */
  issuer?: string;
  /** The resource tokens must be issued for. Default: the resource `protect()` passes in. */
  audience?: string | URL;
  /**
   * Seconds an `active: true` answer is reused (never past the token's `exp`). Default 60; 0 asks the AS
   * every time, which is what makes a revocation take effect immediately. Inactive answers are not cached.
   */
  cacheTtl?: number;
  /** At most this many answers are cached; the oldest go first. Default 10 000. */
  cacheSize?: number;
  /** Timeout of one introspection request in milliseconds. Default 5000. */
  timeout?: number;
}

interface IntrospectionResponse {
  active?: unknown;
  scope?: unknown;
  client_id?: unknown;
  exp?: unknown;
  sub?: unknown;
  aud?: unknown;
  iss?: unknown;
  [claim: string]: unknown;
}

/**
 * Verifies opaque (or any) access tokens by asking the authorization server (RFC 7662 token introspection),
 * authenticating as this resource server. `active: false` — unknown, expired or revoked — answers 401. The
 * audience check is always on: the response's `aud` must name this resource.
 *
 * @example
 * ```ts
 * import { introspectionVerifier, protect } from 'gatehouse/server';
 *
 * const verifier = introspectionVerifier({
 *   endpoint: 'https://auth.example.com/token/introspection',
 *   clientId: 'mcp-server',
 *   clientSecret: process.env.MCP_CLIENT_SECRET!,
 *   cacheTtl: 30,
 * });
 * ```
 */
export function introspectionVerifier(options: IntrospectionVerifierOptions): TokenVerifier {
  const endpoint = assertSecureUrl(options.endpoint, 'introspection endpoint').href;
  const credentials: ClientCredentials | undefined =
    options.credentials ??
    (options.clientId && options.clientSecret
      ? { clientId: options.clientId, clientSecret: options.clientSecret }
      : undefined);
  if (!credentials) {
    throw new TypeError('introspectionVerifier: pass clientId and clientSecret, or credentials');
  }
  const audience = options.audience === undefined ? undefined : canonicalResourceUri(options.audience);
  const cacheTtl = (options.cacheTtl ?? 60) * 1000;
  const cacheSize = options.cacheSize ?? 10_000;
  const timeout = options.timeout ?? 5000;
  // Keyed by a hash so the cache never holds bearer tokens in the clear.
  const cache = new Map<string, { authInfo: AuthInfo; until: number }>();

  async function introspect(token: string): Promise<IntrospectionResponse> {
    const body = new URLSearchParams({ token, token_type_hint: 'access_token' });
    const headers = new Headers({
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    });
    await authenticateClient(credentials!, body, headers, options.issuer ?? new URL(endpoint).origin);
    let response: Response;
    try {
      response = await fetch(endpoint, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeout) });
    } catch (error) {
      throw new OAuthProtocolError('temporarily_unavailable', 'the authorization server cannot be reached', {
        status: 503,
        cause: error,
      });
    }
    if (response.status >= 500) {
      await response.body?.cancel();
      throw new OAuthProtocolError(
        'temporarily_unavailable',
        `the introspection endpoint answered ${response.status}`,
        {
          status: 503,
        },
      );
    }
    if (!response.ok) {
      const error = await OAuthProtocolError.fromResponse(response);
      // Our credentials were refused: a server misconfiguration, not the caller's fault.
      throw new OAuthProtocolError('server_error', `token introspection failed: ${error.message}`, {
        status: 500,
        cause: error,
      });
    }
    const json = (await response.json().catch(() => undefined)) as IntrospectionResponse | undefined;
    if (!json || typeof json !== 'object') {
      throw new OAuthProtocolError('server_error', 'the introspection response is not a JSON object', { status: 500 });
    }
    return json;
  }

  return {
    async verify(token: string, context?: VerifyContext): Promise<AuthInfo> {
      const expected = audience ?? (context?.resource ? canonicalResourceUri(context.resource) : undefined);
      if (!expected) throw new TypeError('introspectionVerifier: no audience; pass `audience` or use protect()');
      const key = createHash('sha256').update(token).update('\0').update(expected).digest('base64url');
      const now = Date.now();
      const cached = cache.get(key);
      if (cached && cached.until > now) return cached.authInfo;
      if (cached) cache.delete(key);

      const claims = await introspect(token);
      if (claims.active !== true) throw new InvalidTokenError('the token is not active (expired, revoked or unknown)');
      if (options.issuer !== undefined && claims.iss !== undefined && claims.iss !== options.issuer) {
        throw new InvalidTokenError(`issuer mismatch: expected ${options.issuer}, received ${String(claims.iss)}`);
      }
      assertAudience(claims.aud, expected);
      const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
      if (exp !== undefined && exp * 1000 <= now) throw new InvalidTokenError('the token has expired');
      const authInfo: AuthInfo = {
        token,
        clientId: typeof claims.client_id === 'string' ? claims.client_id : '',
        scopes: scopesOf(claims),
        expiresAt: exp,
        resource: new URL(expected),
        extra: { subject: claims.sub, issuer: claims.iss, claims },
      };
      if (cacheTtl > 0) {
        const until = Math.min(now + cacheTtl, exp === undefined ? Number.POSITIVE_INFINITY : exp * 1000);
        if (cache.size >= cacheSize) cache.delete(cache.keys().next().value!);
        cache.set(key, { authInfo, until });
      }
      return authInfo;
    },
  };
}
