import type { AuthInfo } from '@modelcontextprotocol/server';

export type { AuthInfo };

/**
 * What `protect()` needs from a token verifier: turn a bearer token into {@link AuthInfo}, or throw
 * {@link InvalidTokenError}. Implement it to plug in any token format.
 *
 * Gatehouse verifiers put the token's subject in `authInfo.extra.subject` and its claims in
 * `authInfo.extra.claims`.
 *
 * @example
 * ```ts
 * import { InvalidTokenError, type TokenVerifier } from 'gatehouse/server';
 *
 * const staticTokens: TokenVerifier = {
 *   async verify(token) {
 *     if (token !== process.env.MY_TOKEN) throw new InvalidTokenError('unknown token');
 *     return { token, clientId: 'ci', scopes: ['read'], expiresAt: Math.floor(Date.now() / 1000) + 60 };
 *   },
 * };
 * ```
 */
export interface TokenVerifier {
  verify(token: string): Promise<AuthInfo>;
}
