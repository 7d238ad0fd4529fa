import type { AuthInfo } from '@modelcontextprotocol/server';

export type { AuthInfo };

/** What `protect()` tells a verifier about the request it verifies for. */
export interface VerifyContext {
  /** The protected resource's canonical URL; verifiers without a configured audience check against it. */
  resource: string;
}

/**
 * What `protect()` needs from a token verifier: turn a bearer token into {@link AuthInfo}, or throw
 * {@link InvalidTokenError}. Implement it to plug in any token format. `protect()` passes the resource it
 * protects as `context.resource`; a custom verifier must check that the token was issued for it.
 *
 * Gatehouse verifiers put the token's subject in `authInfo.extra.subject` and its claims in
 * `authInfo.extra.claims`.
 *
 * @example
 * ```ts
 * import { InvalidTokenError, type TokenVerifier } from 'gatehouse/server';
 *
 * const staticTokens: TokenVerifier = {
 *   async verify(token, context) {
 *     if (token !== process.env.MY_TOKEN) throw new InvalidTokenError('unknown token');
 *     return {
 *       token,
 *       clientId: 'ci',
 *       scopes: ['read'],
 *       expiresAt: Math.floor(Date.now() / 1000) + 60,
 *       resource: context ? new URL(context.resource) : undefined,
 *     };
 *   },
 * };
 * ```
 */
export interface TokenVerifier {
  verify(token: string, context?: VerifyContext): Promise<AuthInfo>;
}
