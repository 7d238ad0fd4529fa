import { OAuthProtocolError } from '../oauth/errors.js';
import type { TokenVerifier } from './verifier.js';

/**
 * The bearer token is missing, malformed, expired, revoked or meant for someone else (401 `invalid_token`).
 * Throw it from a custom {@link TokenVerifier}; `protect()` turns it into the 401 challenge.
 *
 * @example
 * ```ts
 * import { InvalidTokenError } from 'gatehouse/server';
 *
 * throw new InvalidTokenError('the token has been revoked');
 * ```
 */
export class InvalidTokenError extends OAuthProtocolError {
  constructor(description: string, options: { cause?: unknown } = {}) {
    super('invalid_token', description, { status: 401, cause: options.cause });
  }
}

/**
 * The token is valid but lacks scopes the operation needs (403 `insufficient_scope`). `requiredScopes` is every
 * scope the operation needs, which is what the challenge's `scope` carries.
 *
 * @example
 * ```ts
 * import { InsufficientScopeError } from 'gatehouse/server';
 *
 * throw new InsufficientScopeError(['mcp:tools', 'repo:write']);
 * ```
 */
export class InsufficientScopeError extends OAuthProtocolError {
  constructor(readonly requiredScopes: readonly string[]) {
    super('insufficient_scope', `this operation needs the scopes: ${requiredScopes.join(' ')}`, { status: 403 });
  }
}
