import { GatehouseError, type OAuthErrorCode, OAuthProtocolError } from '../../oauth/errors.js';

/** Why an upstream step failed. Programs switch on this; people read {@link UpstreamError.userMessage}. */
export type UpstreamErrorReason =
  /** No pending upstream login for this interaction, or it expired (10 minutes by default). */
  | 'login_expired'
  /** The callback's `state` is not the one this interaction sent (a forged or replayed callback). */
  | 'state_mismatch'
  /** The user (or the upstream) refused the authorization at the upstream. */
  | 'upstream_denied'
  /** The upstream answered the callback or the token request with an error. */
  | 'upstream_error'
  /** The ID token failed validation (signature, `iss`, `aud`, `exp`). */
  | 'id_token_invalid'
  /** The ID token's `nonce` is not the one this login sent. */
  | 'nonce_mismatch'
  /** The user's profile could not be read from the upstream. */
  | 'profile_unavailable'
  /** The admission rules (allowed email domains, required claims) refused the account. */
  | 'admission_denied'
  /** The upstream identity is already bound to another local account. */
  | 'identity_conflict'
  /** The user has no tokens for this upstream: they never linked it, or unlinked it. */
  | 'not_linked'
  /** The upstream refused the stored tokens (revoked, or the refresh token expired). */
  | 'revoked'
  /** The stored upstream token lacks scopes the request needs. */
  | 'insufficient_scope'
  /** No upstream of that name is configured. */
  | 'unknown_upstream'
  /** The resource is not mapped to an upstream. */
  | 'unknown_resource'
  /** The upstream could not be reached or answered 5xx. */
  | 'unavailable';

/** The constructor options of {@link UpstreamError}. */
export interface UpstreamErrorOptions {
  /** The OAuth error code to send to the MCP client (or the token-exchange caller). */
  error: OAuthErrorCode;
  reason: UpstreamErrorReason;
  /** `error_description` for developers. Never contains tokens. */
  description: string;
  /** A sentence for the error page. Never contains tokens. */
  userMessage: string;
  /** The upstream's name (`github`, `google`, …), when one is involved. */
  upstream?: string;
  /** Where the user can link or re-grant the upstream. */
  linkUrl?: string;
  status?: number;
  cause?: unknown;
}

/**
 * Any failure of the upstream engine: a login round trip, an account rule, the token vault or a delegated token
 * request. It is an {@link OAuthProtocolError} (`error`, `description`, `status`, `toJSON()`, `toResponse()`), so it
 * can be sent as it is to the MCP client, plus `reason` for programs, `userMessage` for the error page and, when the
 * user can fix it by (re-)granting the upstream, `linkUrl`.
 *
 * @example
 * ```ts
 * import { UpstreamError } from 'gatehouse/authorization-server';
 *
 * try {
 *   account = await upstream.completeUpstreamLogin({ callbackUrl, interactionUid });
 * } catch (error) {
 *   if (!(error instanceof UpstreamError)) throw error;
 *   // show error.userMessage on a page, then end the interaction with { error: error.error, error_description: error.description }
 * }
 * ```
 */
export class UpstreamError extends OAuthProtocolError {
  readonly reason: UpstreamErrorReason;
  readonly userMessage: string;
  readonly upstream: string | undefined;
  readonly linkUrl: string | undefined;

  constructor(options: UpstreamErrorOptions) {
    super(options.error, options.description, { status: options.status, cause: options.cause });
    this.reason = options.reason;
    this.userMessage = options.userMessage;
    this.upstream = options.upstream;
    this.linkUrl = options.linkUrl;
  }
}

/** A misconfigured upstream (missing client ID, bad issuer, unknown preset). Thrown at startup. */
export class UpstreamConfigError extends GatehouseError {
  constructor(message: string, hint?: string) {
    super(message, { code: 'ERR_UPSTREAM_CONFIG', hint });
  }
}

/**
 * The link URL an {@link UpstreamError}'s description ends with (`…; they can grant access at <url>`), for a program
 * that sees only the OAuth error on the wire: the gateway, whose token exchange the vault refused.
 *
 * @example
 * ```ts
 * import { linkUrlIn } from 'gatehouse/authorization-server';
 *
 * linkUrlIn('the user has not linked GitHub; they can grant access at https://auth.example.com/upstream/github/link');
 * // → 'https://auth.example.com/upstream/github/link'
 * ```
 */
export function linkUrlIn(description: string | undefined): string | undefined {
  return /\bat (https?:\/\/\S+)$/.exec(description ?? '')?.[1];
}
