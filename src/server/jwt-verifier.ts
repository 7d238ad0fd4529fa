import { createRemoteJWKSet, type JWTPayload, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';
import { JWKS_CACHE_SECONDS } from '../oauth/discovery.js';
import { GatehouseError, OAuthProtocolError } from '../oauth/errors.js';
import { assertSecureUrl, canonicalResourceUri, sameResource } from '../oauth/resource-uri.js';
import { discoverAuthorizationServer } from './discovery.js';
import { InvalidTokenError } from './errors.js';
import type { AuthInfo, TokenVerifier, VerifyContext } from './verifier.js';

/** Options of {@link jwtVerifier}. */
export interface JwtVerifierOptions {
  /** The authorization server's issuer identifier; the token's `iss` must equal it exactly. */
  issuer: string;
  /** Where the AS publishes its keys. Default: the `jwks_uri` of the issuer's metadata, discovered on first use. */
  jwksUri?: string | URL;
  /**
   * The resource this server is; the token's `aud` must name it (compared as canonical resource URIs).
   * Default: the resource `protect()` passes in. The check itself cannot be turned off.
   */
  audience?: string | URL;
  /** Accepted signature algorithms. Default: the asymmetric JOSE algorithms (never `none`, never HMAC). */
  algorithms?: string[];
  /** Seconds of clock skew tolerated on `exp`/`nbf`/`iat`. Default 30. */
  clockTolerance?: number;
  /**
   * Seconds to wait before fetching the JWKS again when a token names an unknown key (rotation). Default 30;
   * the keys themselves are cached for 10 minutes.
   */
  jwksCooldown?: number;
  /**
   * Seconds a verified token's result is reused for the same token (never past its `exp`), sparing the
   * signature check on every request of a session. Default 60; 0 verifies every time.
   */
  cacheTtl?: number;
  /** At most this many verified tokens are remembered; the oldest go first. Default 10 000. */
  cacheSize?: number;
  /**
   * Require the JOSE header `typ: at+jwt` (RFC 9068 §2.1; `application/at+jwt` too, case-insensitively), so an ID
   * token or another JWT signed by the same issuer is never taken for an access token. Default `true`; set `false`
   * only for a foreign issuer whose access tokens omit it.
   *
   * @example
   * ```ts
   * import { jwtVerifier } from 'gatehouse/server';
   *
   * // An IdP whose access tokens carry `typ: JWT` or no `typ` at all:
   * const verifier = jwtVerifier({ issuer: 'https://idp.example.com', requireAccessTokenType: false });
   * ```
   */
  requireAccessTokenType?: boolean;
}

const DEFAULT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const SYMMETRIC = /^HS\d+$|^none$/i;

/** Reads `scope` (RFC 9068, space-separated) or `scp` (array, as some IdPs issue). */
export function scopesOf(claims: Record<string, unknown>): string[] {
  const scope = claims['scope'] ?? claims['scp'];
  if (typeof scope === 'string') return scope.split(' ').filter(Boolean);
  if (Array.isArray(scope)) return scope.filter((s): s is string => typeof s === 'string');
  return [];
}

/** Key-fetching failures are the AS's or the network's fault, not the caller's: 503, so clients do not re-login. */
function isKeySetUnavailable(error: unknown): boolean {
  return (
    error instanceof joseErrors.JWKSTimeout ||
    error instanceof joseErrors.JWKSInvalid ||
    !(error instanceof joseErrors.JOSEError)
  );
}

function describeJoseError(error: unknown, issuer: string): string {
  if (error instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'typ') {
      return 'the token is not an access token: its JOSE header typ must be at+jwt (RFC 9068)';
    }
    if (error.claim === 'iss') return `issuer mismatch: expected ${issuer}, received ${String(error.payload.iss)}`;
    return `claim ${error.claim} is invalid: ${error.reason}`;
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey)
    return 'the token is signed with a key the issuer does not publish';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm that is not allowed';
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return 'the token is malformed';
  return 'the token could not be verified';
}

/** Throws unless `audiences` names `expected`; the message names both, so a misconfiguration is obvious. */
export function assertAudience(audiences: unknown, expected: string): void {
  const list = audiences === undefined ? [] : Array.isArray(audiences) ? audiences : [audiences];
  if (!list.some((aud) => typeof aud === 'string' && sameResource(aud, expected))) {
    throw new InvalidTokenError(
      `audience mismatch: expected ${expected}, received ${list.length ? list.join(', ') : '(none)'}`,
    );
  }
}

/** Canonical audiences by the resource given, computed once each: a verifier serves a few resources. */
const MAX_AUDIENCES = 1000;

function expectedAudience(
  configured: string | undefined,
  context: VerifyContext | undefined,
  known: Map<string, string>,
): string {
  if (configured) return configured;
  const resource = context?.resource;
  if (resource) {
    let canonical = known.get(resource);
    if (canonical === undefined) {
      canonical = canonicalResourceUri(resource);
      if (known.size >= MAX_AUDIENCES) known.clear();
      known.set(resource, canonical);
    }
    return canonical;
  }
  throw new GatehouseError('the verifier has no audience to check tokens against', {
    code: 'ERR_NO_AUDIENCE',
    hint: 'Pass `audience` to the verifier, or use it through protect(), which passes its `resource`.',
  });
}

/**
 * Verifies JWT access tokens (RFC 9068) against an issuer's JWKS, with key caching and rotation handled by
 * `jose`. The audience check is always on: a token minted for another resource is refused, and the error says
 * which audience was expected and which arrived.
 *
 * @example
 * ```ts
 * import { jwtVerifier } from 'gatehouse/server';
 *
 * // jwksUri is discovered from https://auth.example.com/.well-known/oauth-authorization-server,
 * // and the audience is the `resource` given to protect().
 * const verifier = jwtVerifier({ issuer: 'https://auth.example.com' });
 *
 * // Or everything explicit:
 * const explicit = jwtVerifier({
 *   issuer: 'https://auth.example.com',
 *   jwksUri: 'https://auth.example.com/jwks',
 *   audience: 'https://mcp.example.com/mcp',
 *   algorithms: ['ES256'],
 * });
 * ```
 */
export function jwtVerifier(options: JwtVerifierOptions): TokenVerifier {
  const issuer = options.issuer;
  assertSecureUrl(issuer, 'issuer');
  const audience = options.audience === undefined ? undefined : canonicalResourceUri(options.audience);
  const algorithms = options.algorithms ?? DEFAULT_ALGORITHMS;
  const bad = algorithms.filter((alg) => SYMMETRIC.test(alg));
  if (bad.length) throw new TypeError(`jwtVerifier: algorithms ${bad.join(', ')} are not allowed for access tokens`);
  const clockTolerance = options.clockTolerance ?? 30;
  const cooldownDuration = (options.jwksCooldown ?? 30) * 1000;
  const cacheTtl = (options.cacheTtl ?? 60) * 1000;
  const cacheSize = options.cacheSize ?? 10_000;
  // jose compares typ case-insensitively and without the `application/` prefix.
  const typ = options.requireAccessTokenType === false ? undefined : 'at+jwt';
  // Keyed by the whole token (and the audience): a result is reused only for exactly the bytes verified.
  const verified = new Map<string, { authInfo: AuthInfo; until: number }>();
  const audiences = new Map<string, string>();

  const remote = (uri: string | URL) =>
    createRemoteJWKSet(assertSecureUrl(uri, 'jwksUri'), { cooldownDuration, cacheMaxAge: JWKS_CACHE_SECONDS * 1000 });
  let jwks: JWTVerifyGetKey | undefined = options.jwksUri === undefined ? undefined : remote(options.jwksUri);
  let discovering: Promise<JWTVerifyGetKey> | undefined;
  const getJwks = async (): Promise<JWTVerifyGetKey> => {
    if (jwks) return jwks;
    discovering ??= discoverAuthorizationServer(issuer).then(
      (metadata) => {
        if (!metadata.jwks_uri) throw new TypeError(`the metadata of ${issuer} has no jwks_uri`);
        jwks = remote(metadata.jwks_uri);
        return jwks;
      },
      (error: unknown) => {
        discovering = undefined; // try again on the next request
        throw error;
      },
    );
    return discovering;
  };

  return {
    async verify(token: string, context?: VerifyContext): Promise<AuthInfo> {
      const expected = expectedAudience(audience, context, audiences);
      const cacheKey = audience ? token : `${expected} ${token}`;
      const hit = cacheTtl > 0 ? verified.get(cacheKey) : undefined;
      if (hit) {
        if (hit.until > Date.now()) return hit.authInfo;
        verified.delete(cacheKey);
      }
      let keys: JWTVerifyGetKey;
      try {
        keys = jwks ?? (await getJwks());
      } catch (error) {
        throw new OAuthProtocolError('temporarily_unavailable', `the keys of ${issuer} cannot be discovered`, {
          status: 503,
          cause: error,
        });
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, { issuer, algorithms, clockTolerance, ...(typ ? { typ } : {}) }));
      } catch (error) {
        if (isKeySetUnavailable(error)) {
          throw new OAuthProtocolError('temporarily_unavailable', `the keys of ${issuer} cannot be fetched`, {
            status: 503,
            cause: error,
          });
        }
        throw new InvalidTokenError(describeJoseError(error, issuer), { cause: error });
      }
      assertAudience(payload.aud, expected);
      if (typeof payload.exp !== 'number') throw new InvalidTokenError('the token has no expiry (exp)');
      const clientId = typeof payload['client_id'] === 'string' ? payload['client_id'] : payload['azp'];
      const authInfo: AuthInfo = {
        token,
        clientId: typeof clientId === 'string' ? clientId : '',
        scopes: scopesOf(payload),
        expiresAt: payload.exp,
        resource: new URL(expected),
        extra: { subject: payload.sub, issuer: payload.iss, claims: payload },
      };
      if (cacheTtl > 0) {
        if (verified.size >= cacheSize) verified.delete(verified.keys().next().value!);
        verified.set(cacheKey, { authInfo, until: Math.min(Date.now() + cacheTtl, payload.exp * 1000) });
      }
      return authInfo;
    },
  };
}
