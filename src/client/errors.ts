import { GatehouseError } from '../oauth/errors.js';

/**
 * Logging in to an MCP server failed. Subclasses say at which step; every message says what to do.
 *
 * @example
 * ```ts
 * import { AuthenticationError } from 'gatehouse/client';
 *
 * try {
 *   await oauth.authorize();
 * } catch (error) {
 *   if (error instanceof AuthenticationError) console.error(`${error.message}\n${error.hint ?? ''}`);
 * }
 * ```
 */
export class AuthenticationError extends GatehouseError {
  constructor(message: string, options: { code?: string; hint?: string; cause?: unknown } = {}) {
    super(message, { code: options.code ?? 'ERR_AUTHENTICATION', hint: options.hint, cause: options.cause });
  }
}

/** The server's or the authorization server's metadata could not be discovered or is unusable. */
export class DiscoveryError extends AuthenticationError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { code: 'ERR_DISCOVERY', ...options });
  }
}

/** The client could not register with the authorization server. */
export class RegistrationError extends AuthenticationError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { code: 'ERR_REGISTRATION', ...options });
  }
}

/** The user (or the authorization server) refused the authorization request. */
export class AuthorizationDeniedError extends AuthenticationError {
  constructor(
    readonly error: string,
    readonly description?: string,
  ) {
    super(`Authorization was refused: ${error}${description ? ` (${description})` : ''}`, {
      code: 'ERR_AUTHORIZATION_DENIED',
      hint: 'Log in again and approve the request, or ask the server operator for access.',
    });
  }
}

/** The authorization callback did not arrive in time. */
export class CallbackTimeoutError extends AuthenticationError {
  constructor(timeoutMs: number) {
    super(`No authorization callback arrived within ${Math.round(timeoutMs / 1000)} s`, {
      code: 'ERR_CALLBACK_TIMEOUT',
      hint: 'Finish the login in the browser sooner, or raise timeoutMs.',
    });
  }
}

/** The refresh token was refused and a fresh login was not possible. */
export class RefreshFailedError extends AuthenticationError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { code: 'ERR_REFRESH_FAILED', hint: 'Log in again.', ...options });
  }
}

/** The authorization server's identity did not match what was expected (RFC 8414 §3.3, RFC 9207). */
export class IssuerMismatchError extends AuthenticationError {
  constructor(
    readonly expected: string,
    readonly received: string | undefined,
  ) {
    super(`Authorization server issuer mismatch: expected ${expected}, received ${received ?? '(none)'}`, {
      code: 'ERR_ISSUER_MISMATCH',
      hint: 'The response may come from another authorization server (a mix-up attack); do not retry blindly.',
    });
  }
}
