/**
 * Error types shared by every part of Gatehouse.
 *
 * Two families:
 * - {@link OAuthProtocolError}: an OAuth error as it travels on the wire (`error`, `error_description`, HTTP
 *   status). Servers turn it into a JSON response with {@link OAuthProtocolError.toResponse}; clients build it
 *   from a response with {@link OAuthProtocolError.fromResponse}.
 * - {@link GatehouseError}: the base of every typed error our API throws. Each carries a `code` for programs and
 *   a `hint` that tells a person what to do next.
 */

/** Base class of every error Gatehouse throws on purpose. */
export class GatehouseError extends Error {
  /** A stable, machine-readable identifier, e.g. `ERR_ISSUER_MISMATCH`. */
  readonly code: string;
  /** One sentence telling a person how to fix it. */
  readonly hint: string | undefined;

  constructor(message: string, options: { code: string; hint?: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.hint = options.hint;
  }
}

/** Standard OAuth 2.x error codes (RFC 6749, 6750, 7591, 8693, 9449, 9728). */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'access_denied'
  | 'unsupported_response_type'
  | 'server_error'
  | 'temporarily_unavailable'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'invalid_target'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | (string & {});

const DEFAULT_STATUS: Record<string, number> = {
  invalid_client: 401,
  invalid_token: 401,
  insufficient_scope: 403,
  access_denied: 403,
  server_error: 500,
  temporarily_unavailable: 503,
};

/**
 * An OAuth error response: `{ "error": "...", "error_description": "..." }` with its HTTP status.
 *
 * @example
 * ```ts
 * import { OAuthProtocolError } from 'gatehouse/oauth';
 *
 * const error = new OAuthProtocolError('invalid_request', 'resource must be an absolute URI');
 * const response = error.toResponse(); // 400, application/json, Cache-Control: no-store
 * ```
 */
export class OAuthProtocolError extends GatehouseError {
  /** The OAuth `error` code. */
  readonly error: OAuthErrorCode;
  /** The OAuth `error_description`, meant for developers. */
  readonly description: string | undefined;
  /** HTTP status this error is (or was) carried with. */
  readonly status: number;

  constructor(error: OAuthErrorCode, description?: string, options: { status?: number; cause?: unknown } = {}) {
    super(description ? `${error}: ${description}` : error, {
      code: `OAUTH_${error.toUpperCase()}`,
      cause: options.cause,
    });
    this.error = error;
    this.description = description;
    this.status = options.status ?? DEFAULT_STATUS[error] ?? 400;
  }

  /** The JSON body defined by RFC 6749 §5.2. */
  toJSON(): { error: string; error_description?: string } {
    return this.description === undefined
      ? { error: this.error }
      : { error: this.error, error_description: this.description };
  }

  /** A web-standard `Response` carrying this error as JSON, never cached. */
  toResponse(headers?: HeadersInit): Response {
    const merged = new Headers(headers);
    merged.set('content-type', 'application/json');
    merged.set('cache-control', 'no-store');
    return new Response(JSON.stringify(this.toJSON()), { status: this.status, headers: merged });
  }

  /**
   * Reads an OAuth error from an HTTP response. A body that is not an OAuth error becomes `server_error` with the
   * status and the start of the body in the description, so nothing is lost.
   */
  static async fromResponse(response: Response): Promise<OAuthProtocolError> {
    const text = await response.text().catch(() => '');
    try {
      const body = JSON.parse(text) as unknown;
      if (body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string') {
        const { error, error_description } = body as { error: string; error_description?: unknown };
        return new OAuthProtocolError(error, typeof error_description === 'string' ? error_description : undefined, {
          status: response.status,
        });
      }
    } catch {
      // Not JSON: fall through.
    }
    return new OAuthProtocolError('server_error', `HTTP ${response.status}: ${text.slice(0, 200)}`, {
      status: response.status,
    });
  }
}
