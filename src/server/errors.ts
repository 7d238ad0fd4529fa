import { OAuthProtocolError } from '../oauth/errors.js';

/** The bearer token is missing, malformed, expired, revoked or meant for someone else (401 `invalid_token`). */
export class InvalidTokenError extends OAuthProtocolError {
  constructor(description: string, options: { cause?: unknown } = {}) {
    super('invalid_token', description, { status: 401, cause: options.cause });
  }
}

/** The token is valid but lacks scopes the operation needs (403 `insufficient_scope`). */
export class InsufficientScopeError extends OAuthProtocolError {
  constructor(readonly requiredScopes: readonly string[]) {
    super('insufficient_scope', `this operation needs the scopes: ${requiredScopes.join(' ')}`, { status: 403 });
  }
}
