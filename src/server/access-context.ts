import { GatehouseError } from '../oauth/errors.js';
import { canonicalResourceUri } from '../oauth/resource-uri.js';

/** A token obtained for one resource. */
export interface ResourceAccess {
  /** The resource it is for, as requested. */
  resource: string;
  /** The access token to send to that resource. */
  accessToken: string;
  /** Usually `Bearer`. */
  tokenType: string;
  /** Seconds since the epoch, when the AS said. */
  expiresAt?: number;
  /** The granted scopes, when the AS said. */
  scopes?: string[];
}

/** Why a token could not be obtained. Recorded, never thrown into the tool. */
export interface AccessError {
  /** An OAuth error code (`invalid_target`, `access_denied`, …), or `network_error` / `configuration_error`. */
  error: string;
  /** A sentence for logs and for the tool's answer. */
  message: string;
  /** The HTTP status of the AS answer, when there was one. */
  status?: number;
}

/** The error with a `toString()` that reads `code: message` (so `${error}` in a template says what happened). */
function readable(error: AccessError): AccessError {
  const copy = { ...error };
  Object.defineProperty(copy, 'toString', { value: () => `${error.error}: ${error.message}`, enumerable: false });
  return copy;
}

/** `success`: every resource has a token; `partial_error`: some do; `error`: none do, or a global error. */
export type AccessStatus = 'success' | 'partial_error' | 'error';

/**
 * Thrown by {@link AccessContext.access} for a resource that has no token; `reason` says why.
 *
 * @example
 * ```ts
 * try {
 *   access.access('https://api.example.com');
 * } catch (error) {
 *   if (error instanceof ResourceAccessError) console.warn(error.reason?.error); // e.g. 'invalid_target'
 * }
 * ```
 */
export class ResourceAccessError extends GatehouseError {
  constructor(
    readonly resource: string,
    readonly reason: AccessError | undefined,
  ) {
    super(
      reason
        ? `no access token for ${resource}: ${reason.message}`
        : `no access token for ${resource}: it was not requested in grant()`,
      {
        code: 'ERR_RESOURCE_ACCESS',
        hint: 'Check accessContext.hasResourceError(resource) before calling access(resource).',
      },
    );
  }
}

function key(resource: string): string {
  try {
    return canonicalResourceUri(resource);
  } catch {
    return resource;
  }
}

/**
 * The outcome of a {@link grant}: a token per resource, or the error that prevented it. Tools check the errors
 * first, then take tokens with `access(resource).accessToken`.
 *
 * @example
 * ```ts
 * const tool = grant(['https://api.example.com', 'https://calendar.example.com'])(async (ctx, access) => {
 *   if (access.getStatus() === 'error') return { content: [{ type: 'text', text: `Failed: ${JSON.stringify(access.getErrors())}` }], isError: true };
 *   for (const resource of access.getSuccessfulResources()) {
 *     await fetch(resource, { headers: { authorization: `Bearer ${access.access(resource).accessToken}` } });
 *   }
 *   return { content: [{ type: 'text', text: 'done' }] };
 * });
 * ```
 */
export class AccessContext {
  readonly #tokens = new Map<string, ResourceAccess>();
  readonly #errors = new Map<string, { resource: string; error: AccessError }>();
  readonly #resources: string[] = [];
  #error: AccessError | undefined;

  /** Builds a context; {@link grant} and `mockAccessContext` do this for you. */
  constructor(init: { tokens?: ResourceAccess[]; errors?: Record<string, AccessError>; error?: AccessError } = {}) {
    for (const token of init.tokens ?? []) this.setToken(token);
    for (const [resource, error] of Object.entries(init.errors ?? {})) this.setResourceError(resource, error);
    if (init.error) this.setError(init.error);
  }

  /** Records a token. */
  setToken(token: ResourceAccess): void {
    this.#track(token.resource);
    this.#tokens.set(key(token.resource), token);
    this.#errors.delete(key(token.resource));
  }

  /** Records why one resource has no token. */
  setResourceError(resource: string, error: AccessError): void {
    this.#track(resource);
    this.#errors.set(key(resource), { resource, error: readable(error) });
    this.#tokens.delete(key(resource));
  }

  /** Records an error that affects every resource (e.g. the tool was called without a user token). */
  setError(error: AccessError): void {
    this.#error = readable(error);
  }

  #track(resource: string): void {
    if (!this.#resources.some((r) => key(r) === key(resource))) this.#resources.push(resource);
  }

  /** The token for `resource`; throws {@link ResourceAccessError} when there is none. */
  access(resource: string): ResourceAccess {
    const token = this.#tokens.get(key(resource));
    if (token && !this.#error) return token;
    throw new ResourceAccessError(resource, this.#error ?? this.#errors.get(key(resource))?.error);
  }

  /** True when there is a global error or any resource error. */
  hasErrors(): boolean {
    return this.#error !== undefined || this.#errors.size > 0;
  }

  /** True when there is a global error. */
  hasError(): boolean {
    return this.#error !== undefined;
  }

  /** The global error, if any. */
  getError(): AccessError | undefined {
    return this.#error;
  }

  /** True when `resource` has an error. */
  hasResourceError(resource: string): boolean {
    return this.#errors.has(key(resource));
  }

  /** The error of `resource`, if any. */
  getResourceError(resource: string): AccessError | undefined {
    return this.#errors.get(key(resource))?.error;
  }

  /** Every resource error, by resource as requested (seed 003's `get_resource_errors`). */
  getResourceErrors(): Record<string, AccessError> {
    return this.getErrors().resources;
  }

  /** Every error: the global one and one per failed resource (keyed as requested). */
  getErrors(): { error?: AccessError; resources: Record<string, AccessError> } {
    const resources: Record<string, AccessError> = {};
    for (const { resource, error } of this.#errors.values()) resources[resource] = error;
    return this.#error ? { error: this.#error, resources } : { resources };
  }

  /** `success`, `partial_error` or `error`. */
  getStatus(): AccessStatus {
    if (this.#error) return 'error';
    if (this.#errors.size === 0) return 'success';
    return this.#tokens.size > 0 ? 'partial_error' : 'error';
  }

  /** Resources that have a token, as requested. */
  getSuccessfulResources(): string[] {
    if (this.#error) return [];
    return this.#resources.filter((r) => this.#tokens.has(key(r)));
  }

  /** Resources that have none. */
  getFailedResources(): string[] {
    if (this.#error) return [...this.#resources];
    return this.#resources.filter((r) => this.#errors.has(key(r)));
  }

  /**
   * One readable line for logs and tool answers; never contains tokens, e.g.
   * `partial_error: https://api.example.com: invalid_scope: the user did not consent to these scopes`.
   */
  toString(): string {
    const status = this.getStatus();
    if (this.#error) return `${status}: ${this.#error}`;
    const failures = [...this.#errors.values()].map(({ resource, error }) => `${resource}: ${error}`);
    return failures.length ? `${status}: ${failures.join('; ')}` : status;
  }

  /** A summary for logs; never contains tokens. */
  toJSON(): { status: AccessStatus; resources: string[]; errors: ReturnType<AccessContext['getErrors']> } {
    return { status: this.getStatus(), resources: [...this.#resources], errors: this.getErrors() };
  }
}
