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
  /**
   * `code`: `ERR_DISCOVERY`, or what {@link explainLoginFailure} found: `ERR_NOT_MCP_SERVER` (the URL does not
   * speak MCP), `ERR_AUTHORIZATION_SERVER_URL` (it is the authorization server's), `ERR_NO_RESOURCE_METADATA`; and
   * `ERR_PKCE_UNSUPPORTED` when the authorization server's metadata does not list `S256` (checked before registering).
   */
  constructor(message: string, options: { code?: string; hint?: string; cause?: unknown } = {}) {
    super(message, { ...options, code: options.code ?? 'ERR_DISCOVERY' });
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
      hint:
        error === 'access_denied'
          ? 'The access was denied at the consent page (or by policy): log in again and choose Approve, or ask the server operator for access.'
          : 'Log in again and approve the request, or ask the server operator for access.',
    });
  }
}

/** A device login's code expired (RFC 8628 `expired_token`) before the user approved it. */
export class DeviceCodeExpiredError extends AuthenticationError {
  constructor(message = 'The device code expired before the login was approved') {
    super(message, {
      code: 'ERR_DEVICE_CODE_EXPIRED',
      hint: 'Log in again and enter the new code at the verification address before it expires.',
    });
  }
}

/** A device login was asked for, but the authorization server offers no device authorization endpoint. */
export class DeviceFlowUnsupportedError extends AuthenticationError {
  constructor(issuer: string) {
    super(`The authorization server ${issuer} does not offer the device authorization grant (RFC 8628)`, {
      code: 'ERR_DEVICE_FLOW_UNSUPPORTED',
      hint: 'Log in with a browser (or paste-back), or ask the operator to enable the device flow.',
    });
  }
}

/** The authorization callback did not arrive in time. */
export class CallbackTimeoutError extends AuthenticationError {
  constructor(timeoutMs: number) {
    super(`No authorization callback arrived within ${Math.round(timeoutMs / 1000)} s`, {
      code: 'ERR_CALLBACK_TIMEOUT',
      hint: 'Finish the login in the browser sooner, or raise timeoutMs. If the browser showed an error (such as a redirect_uri mismatch), fix that first.',
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

/**
 * The MCP server answered a request with a JSON-RPC error. `protocolCode` is the wire code (e.g. `-32602` for
 * invalid params, `-32601` for an unknown method); `data` is the error's `data`, if any.
 *
 * @example
 * ```ts
 * import { McpError } from 'gatehouse/client';
 *
 * try {
 *   await client.readResource('file:///missing');
 * } catch (error) {
 *   if (error instanceof McpError && error.protocolCode === -32602) console.error('no such resource');
 * }
 * ```
 */
export class McpError extends GatehouseError {
  /** The JSON-RPC error code sent by the server. */
  readonly protocolCode: number;
  /** The JSON-RPC error `data`, if the server sent any. */
  readonly data: unknown;

  constructor(
    message: string,
    options: { protocolCode: number; data?: unknown; code?: string; hint?: string; cause?: unknown },
  ) {
    super(message, { code: options.code ?? 'ERR_MCP', hint: options.hint, cause: options.cause });
    this.protocolCode = options.protocolCode;
    this.data = options.data;
  }
}

/** One page the server asks the user to open (MCP URL-mode elicitation), as the server described it. */
export interface UrlElicitation {
  /** The page to open: show it in full and open it only with the user's consent. */
  url: string;
  /** Why the server needs it, for the user. */
  message: string;
  /** The server's id for it; `notifications/elicitation/complete` names it when the user is done. */
  elicitationId: string;
}

/**
 * The server cannot answer until the user completes something in a browser (MCP's URL-elicitation-required error,
 * `-32042`): typically connecting an account the server acts on — behind `gatehouse gateway`, linking GitHub,
 * Google, …. `url` is the (first) page to open; `elicitations` lists them all. With an `elicitationHandler` the
 * `Client` offers them itself and retries once the server says they are done; this error means the user did not
 * accept, there is no handler, or the server did not confirm in time.
 *
 * @example
 * ```ts
 * import { UrlElicitationRequiredError } from 'gatehouse/client';
 *
 * try {
 *   await client.callTool('my_repos');
 * } catch (error) {
 *   if (error instanceof UrlElicitationRequiredError) console.error(`Open ${error.url}, then try again.`);
 * }
 * ```
 */
export class UrlElicitationRequiredError extends McpError {
  readonly elicitations: readonly UrlElicitation[];

  constructor(message: string, elicitations: readonly UrlElicitation[], options: { cause?: unknown } = {}) {
    const first = elicitations[0]?.url ?? 'the page the server names';
    super(message, {
      protocolCode: -32042,
      data: { elicitations },
      code: 'ERR_URL_ELICITATION_REQUIRED',
      hint: `Open ${first} in a browser and finish there, then try again (or pass an elicitationHandler so the Client offers it and retries).`,
      ...(options.cause !== undefined && { cause: options.cause }),
    });
    this.elicitations = elicitations;
  }

  /** The first page to open. */
  get url(): string | undefined {
    return this.elicitations[0]?.url;
  }
}

/**
 * A tool ran and reported an error (`isError: true`). `result` holds what it returned; the message is its text.
 * Pass `{ raiseOnError: false }` to `callTool` to get the result instead of this error.
 *
 * @example
 * ```ts
 * import { ToolError } from 'gatehouse/client';
 *
 * try {
 *   await client.callTool('divide', { a: 1, b: 0 });
 * } catch (error) {
 *   if (error instanceof ToolError) console.error(`${error.toolName} failed: ${error.message}`);
 * }
 * ```
 */
export class ToolError extends GatehouseError {
  constructor(
    /** The tool's name, as called (with its server prefix on a multi-server client). */
    readonly toolName: string,
    message: string,
    /** The tool's result: `content`, `structuredContent`, `isError`. */
    readonly result: { content: unknown[]; structuredContent?: unknown; isError?: boolean },
  ) {
    super(message, {
      code: 'ERR_TOOL',
      hint: 'The tool ran and reported this error; check its arguments, or pass { raiseOnError: false } to inspect the result.',
    });
  }
}

/** A request got no answer in time. Raise `timeout` (per call, or on the `Client`) if the server is just slow. */
export class TimeoutError extends GatehouseError {
  constructor(
    /** The MCP method that timed out, e.g. `tools/call`. */
    readonly method: string,
    /** The timeout that was exceeded, in milliseconds. */
    readonly timeoutMs: number | undefined,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(`${method} got no answer within ${timeoutMs === undefined ? 'the timeout' : `${timeoutMs} ms`}`, {
      code: 'ERR_TIMEOUT',
      hint:
        options.hint ??
        'The server may be slow or stuck: pass a larger `timeout` (in milliseconds), per call or to the Client.',
      cause: options.cause,
    });
  }
}

/**
 * The client could not reach the MCP server, or the connection broke: the server is down, the URL or command is
 * wrong, the process exited, or the client is not connected yet.
 */
export class ConnectionError extends GatehouseError {
  constructor(message: string, options: { code?: string; hint?: string; cause?: unknown } = {}) {
    super(message, {
      code: options.code ?? 'ERR_CONNECTION',
      hint: options.hint ?? 'Check that the server is running and that the URL or command is right.',
      cause: options.cause,
    });
  }
}

/**
 * A skill file did not match the server's entry for it (skills extension, SEP-2640): not listed, another size,
 * another digest, or — for `SKILL.md` — frontmatter that differs from the entry. Do not use the file; for
 * `SKILL.md`, do not load the skill.
 *
 * @example
 * ```ts
 * import { SkillVerificationError } from 'gatehouse/client';
 *
 * const [skill] = await client.listSkills();
 * try {
 *   if (skill) await client.readSkill(skill);
 * } catch (error) {
 *   if (error instanceof SkillVerificationError) console.error(`refused ${error.uri}: ${error.reason}`);
 * }
 * ```
 */
export class SkillVerificationError extends GatehouseError {
  constructor(
    /** What failed: `unlisted`, `size`, `digest` or `frontmatter`. */
    readonly reason: 'unlisted' | 'size' | 'digest' | 'frontmatter',
    /** The file's URI. */
    readonly uri: string,
    message: string,
    options: { differences?: readonly string[]; cause?: unknown } = {},
  ) {
    super(message, {
      code: 'ERR_SKILL_VERIFICATION',
      hint: 'The server served content its skill entry does not describe: the file was not used. Report it to the server owner; list the skills again if the skill was just updated.',
      cause: options.cause,
    });
    this.differences = options.differences ?? [];
  }

  /** For `frontmatter`: one line per differing field. */
  readonly differences: readonly string[];
}
