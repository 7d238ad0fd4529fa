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

/**
 * The token is valid but the user's authentication does not meet what the operation needs: the login is too old
 * or of the wrong kind (RFC 9470, 401 `insufficient_user_authentication`). The challenge carries `acr_values`
 * and/or `max_age`, which a client puts on its next authorization request.
 *
 * @example
 * ```ts
 * import { InsufficientUserAuthenticationError } from 'gatehouse/server';
 *
 * throw new InsufficientUserAuthenticationError('this tool needs a login within the last 300 seconds', { maxAge: 300 });
 * ```
 */
export class InsufficientUserAuthenticationError extends OAuthProtocolError {
  /** Authentication context classes any one of which would do (`acr_values`). */
  readonly acrValues: readonly string[] | undefined;
  /** The most seconds since the user's login (`max_age`). */
  readonly maxAge: number | undefined;

  constructor(description: string, requirement: { acrValues?: readonly string[]; maxAge?: number }) {
    super('insufficient_user_authentication', description, { status: 401 });
    this.acrValues = requirement.acrValues?.length ? requirement.acrValues : undefined;
    this.maxAge = requirement.maxAge;
  }
}
