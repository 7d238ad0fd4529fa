import { createRemoteJWKSet, type JWTPayload, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';
import { canonicalResourceUri, sameResource } from '../oauth/resource-uri.js';
import { InvalidTokenError } from './errors.js';
import type { AuthInfo, TokenVerifier } from './verifier.js';

/** Options of {@link jwtVerifier}. */
export interface JwtVerifierOptions {
  /** The authorization server's issuer identifier; the token's `iss` must equal it exactly. */
  issuer: string;
  /** Where the AS publishes its keys. */
  jwksUri: string | URL;
  /** The resource this server is; the token's `aud` must name it (compared as canonical resource URIs). */
  audience: string | URL;
  /** Accepted signature algorithms. Default: the asymmetric JOSE algorithms (never `none`, never HMAC). */
  algorithms?: string[];
  /** Seconds of clock skew tolerated on `exp`/`nbf`/`iat`. Default 30. */
  clockTolerance?: number;
}

const DEFAULT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

function scopesOf(payload: JWTPayload): string[] {
  const scope = payload['scope'] ?? payload['scp'];
  if (typeof scope === 'string') return scope.split(' ').filter(Boolean);
  if (Array.isArray(scope)) return scope.filter((s): s is string => typeof s === 'string');
  return [];
}

function describeJoseError(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `claim ${error.claim} is invalid: ${error.reason}`;
  if (error instanceof joseErrors.JWKSNoMatchingKey)
    return 'the token is signed with a key the issuer does not publish';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm that is not allowed';
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return 'the token is malformed';
  return 'the token could not be verified';
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
 * const verifier = jwtVerifier({
 *   issuer: 'https://auth.example.com',
 *   jwksUri: 'https://auth.example.com/jwks',
 *   audience: 'https://mcp.example.com/mcp',
 * });
 * ```
 */
export function jwtVerifier(options: JwtVerifierOptions): TokenVerifier {
  const audience = canonicalResourceUri(options.audience);
  const jwks: JWTVerifyGetKey = createRemoteJWKSet(new URL(String(options.jwksUri)));
  const algorithms = options.algorithms ?? DEFAULT_ALGORITHMS;
  const clockTolerance = options.clockTolerance ?? 30;

  return {
    async verify(token: string): Promise<AuthInfo> {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, jwks, { issuer: options.issuer, algorithms, clockTolerance }));
      } catch (error) {
        throw new InvalidTokenError(describeJoseError(error), { cause: error });
      }
      const audiences = payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud];
      if (!audiences.some((aud) => sameResource(aud, audience))) {
        throw new InvalidTokenError(
          `audience mismatch: expected ${audience}, received ${audiences.length ? audiences.join(', ') : '(none)'}`,
        );
      }
      if (typeof payload.exp !== 'number') throw new InvalidTokenError('the token has no expiry (exp)');
      const clientId = typeof payload['client_id'] === 'string' ? payload['client_id'] : (payload.azp as string);
      return {
        token,
        clientId: clientId ?? '',
        scopes: scopesOf(payload),
        expiresAt: payload.exp,
        resource: new URL(audience),
        extra: { subject: payload.sub, issuer: payload.iss, claims: payload },
      };
    },
  };
}
