import { createHash } from 'node:crypto';
import type { AuthInfo, ServerContext } from '@modelcontextprotocol/server';
import { GatehouseError, OAuthProtocolError } from '../oauth/errors.js';
import { assertSecureUrl } from '../oauth/resource-uri.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../oauth/token-exchange.js';
import { AccessContext, type AccessError, type ResourceAccess } from './access-context.js';
import { authenticateClient, type ClientCredentials } from './client-auth.js';
import { DiscoveryError, discoverAuthorizationServer } from './discovery.js';

/** The members of an RFC 8693 §2.2.1 response this client reads. */
interface TokenExchangeResponse {
  access_token: string;
  issued_token_type: string;
  token_type: string;
  expires_in?: number;
  scope?: string;
}

/** Options of {@link TokenExchangeClient} and {@link createGrant}. */
export interface TokenExchangeOptions {
  /** The AS token endpoint. Default: discovered from `issuer`. */
  tokenEndpoint?: string | URL;
  /** The AS issuer: used to discover the token endpoint and as the `aud` of `private_key_jwt` assertions. */
  issuer?: string;
  /** This server's credentials at the AS. */
  credentials: ClientCredentials;
  /** Timeout of one exchange in milliseconds. Default 10 000. */
  timeout?: number;
  /** Seconds before its expiry an exchanged token stops being reused. Default 60 (at most half its lifetime). */
  refreshBefore?: number;
  /** At most this many exchanged tokens are cached; the oldest go first. Default 10 000. */
  cacheSize?: number;
}

/** One exchange to perform. */
export interface ExchangeRequest {
  /** The user's access token, as this server received it. */
  subjectToken: string;
  /** Who the token is for; with a hash of the subject token, `resource` and `scopes` the cache key. */
  subject?: string;
  /** The resource to get a token for (RFC 8707 `resource`). */
  resource: string;
  /** Scopes to ask for. */
  scopes?: readonly string[];
}

/**
 * Raised by {@link TokenExchangeClient.exchange} when the AS answer is unusable; `grant()` records it in the
 * {@link AccessContext} instead.
 *
 * @example
 * ```ts
 * try {
 *   await exchanger.exchange({ subjectToken, resource: 'https://api.example.com' });
 * } catch (error) {
 *   if (error instanceof TokenExchangeError) console.warn(error.detail.error);
 * }
 * ```
 */
export class TokenExchangeError extends GatehouseError {
  constructor(readonly detail: AccessError) {
    super(detail.message, {
      code: 'ERR_TOKEN_EXCHANGE',
      hint: 'Check that the authorization server allows token exchange for this client and resource.',
    });
  }
}

function toAccessError(error: unknown): AccessError {
  if (error instanceof TokenExchangeError) return error.detail;
  if (error instanceof OAuthProtocolError) {
    return {
      error: error.error,
      message: error.description ? `${error.error}: ${error.description}` : error.error,
      status: error.status,
    };
  }
  if (error instanceof DiscoveryError && error.unavailable) {
    return { error: 'temporarily_unavailable', message: error.message };
  }
  if (error instanceof GatehouseError) return { error: 'configuration_error', message: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { error: 'network_error', message: `the authorization server cannot be reached: ${message}` };
}

/**
 * Performs RFC 8693 token exchanges at an authorization server's token endpoint, authenticating as this server,
 * and caches the results per (subject, resource, scopes) until shortly before they expire. Concurrent requests
 * for the same key share one exchange.
 *
 * @example
 * ```ts
 * import { TokenExchangeClient } from 'gatehouse/server';
 *
 * const exchanger = new TokenExchangeClient({
 *   issuer: 'https://auth.example.com',
 *   credentials: { clientId: 'mcp-server', clientSecret: process.env.MCP_CLIENT_SECRET! },
 * });
 * const { accessToken } = await exchanger.exchange({
 *   subjectToken: authInfo.token,
 *   resource: 'https://api.example.com',
 *   scopes: ['read'],
 * });
 * ```
 */
export class TokenExchangeClient {
  readonly #options: TokenExchangeOptions;
  readonly #cache = new Map<string, { access: ResourceAccess; until: number }>();
  readonly #inflight = new Map<string, Promise<ResourceAccess>>();
  #endpoint: Promise<string> | undefined;

  constructor(options: TokenExchangeOptions) {
    if (!options.tokenEndpoint && !options.issuer) {
      throw new TypeError('TokenExchangeClient: pass tokenEndpoint or issuer');
    }
    if (!options.credentials?.clientId) throw new TypeError('TokenExchangeClient: credentials.clientId is required');
    if (options.tokenEndpoint) assertSecureUrl(options.tokenEndpoint, 'tokenEndpoint');
    if (options.issuer) assertSecureUrl(options.issuer, 'issuer');
    this.#options = options;
  }

  #tokenEndpoint(): Promise<string> {
    if (this.#options.tokenEndpoint) return Promise.resolve(String(this.#options.tokenEndpoint));
    this.#endpoint ??= discoverAuthorizationServer(this.#options.issuer!).then(
      (metadata) => {
        if (!metadata.token_endpoint) throw new TypeError(`the metadata of ${metadata.issuer} has no token_endpoint`);
        return assertSecureUrl(metadata.token_endpoint, 'token_endpoint').href;
      },
      (error: unknown) => {
        this.#endpoint = undefined;
        throw error;
      },
    );
    return this.#endpoint;
  }

  /** Exchanges (or reuses a cached exchange of) `subjectToken` for a token for `resource`. */
  async exchange(request: ExchangeRequest): Promise<ResourceAccess> {
    const scopes = [...new Set(request.scopes ?? [])].sort();
    // The subject token's hash is always part of the key: a token the AS would refuse to exchange (revoked, another
    // grant) must reach the AS, never be answered from another token's exchange for the same subject.
    const tokenHash = createHash('sha256').update(request.subjectToken).digest('base64url');
    const cacheKey = JSON.stringify([request.subject ?? '', tokenHash, request.resource, scopes]);
    const cached = this.#cache.get(cacheKey);
    if (cached && cached.until > Date.now()) return cached.access;
    if (cached) this.#cache.delete(cacheKey);
    const pending = this.#inflight.get(cacheKey);
    if (pending) return pending;
    const promise = this.#exchange(request.subjectToken, request.resource, scopes).then((access) => {
      this.#remember(cacheKey, access);
      return access;
    });
    this.#inflight.set(cacheKey, promise);
    try {
      return await promise;
    } finally {
      this.#inflight.delete(cacheKey);
    }
  }

  #remember(cacheKey: string, access: ResourceAccess): void {
    if (access.expiresAt === undefined) return; // no lifetime given: do not guess
    const now = Date.now();
    const lifetime = access.expiresAt * 1000 - now;
    const margin = Math.min((this.#options.refreshBefore ?? 60) * 1000, lifetime / 2);
    const until = access.expiresAt * 1000 - margin;
    if (until <= now) return;
    const size = this.#options.cacheSize ?? 10_000;
    if (this.#cache.size >= size) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(cacheKey, { access, until });
  }

  async #exchange(subjectToken: string, resource: string, scopes: string[]): Promise<ResourceAccess> {
    const endpoint = await this.#tokenEndpoint();
    const body = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
      subject_token: subjectToken,
      subject_token_type: TOKEN_TYPE.accessToken,
      requested_token_type: TOKEN_TYPE.accessToken,
      resource,
    });
    if (scopes.length) body.set('scope', scopes.join(' '));
    const headers = new Headers({ 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' });
    await authenticateClient(this.#options.credentials, body, headers, this.#options.issuer ?? endpoint);
    const response = await fetch(endpoint, {
      method: 'POST',
      headers,
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(this.#options.timeout ?? 10_000),
    });
    if (!response.ok) throw await OAuthProtocolError.fromResponse(response);
    const json = (await response.json().catch(() => undefined)) as Partial<TokenExchangeResponse> | undefined;
    if (!json || typeof json.access_token !== 'string' || !json.access_token) {
      throw new TokenExchangeError({
        error: 'invalid_response',
        message: 'the token-exchange response has no access_token',
        status: response.status,
      });
    }
    const tokenType = typeof json.token_type === 'string' ? json.token_type : 'Bearer';
    if (tokenType.toLowerCase() !== 'bearer' && tokenType.toLowerCase() !== 'n_a') {
      throw new TokenExchangeError({
        error: 'invalid_response',
        message: `the exchanged token has type ${tokenType}; only Bearer tokens are supported`,
      });
    }
    return {
      resource,
      accessToken: json.access_token,
      tokenType: 'Bearer',
      ...(typeof json.expires_in === 'number' ? { expiresAt: Math.floor(Date.now() / 1000) + json.expires_in } : {}),
      ...(typeof json.scope === 'string' ? { scopes: json.scope.split(' ').filter(Boolean) } : {}),
    };
  }

  /**
   * Exchanges for several resources in parallel and records each outcome in an {@link AccessContext}.
   * Never rejects.
   */
  async exchangeAll(
    subjectToken: string,
    resources: readonly string[],
    options: { subject?: string; scopes?: readonly string[] } = {},
  ): Promise<AccessContext> {
    const context = new AccessContext();
    const outcomes = await Promise.allSettled(
      resources.map((resource) =>
        this.exchange({ subjectToken, resource, scopes: options.scopes, subject: options.subject }),
      ),
    );
    outcomes.forEach((outcome, i) => {
      const resource = resources[i]!;
      if (outcome.status === 'fulfilled') context.setToken({ ...outcome.value, resource });
      else context.setResourceError(resource, toAccessError(outcome.reason));
    });
    return context;
  }

  /** Forgets every cached token. */
  clear(): void {
    this.#cache.clear();
  }
}

/** Options of one {@link Grant}. */
export interface GrantOptions {
  /** Scopes to ask for at every resource. */
  scopes?: string[];
}

/**
 * Names the resources (and scopes) a tool needs tokens for; returns the wrapper for the tool callback. The
 * callback gets the tool's own arguments and, last, the {@link AccessContext}.
 *
 * @example
 * ```ts
 * server.registerTool('a', {}, grant('https://api.example.com')(async (ctx, access) => ({ content: [] })));
 * server.registerTool(
 *   'b',
 *   { inputSchema: z.object({ q: z.string() }) },
 *   grant(['https://api.example.com'], { scopes: ['read'] }).withArgs(async ({ q }, ctx, access) => ({ content: [] })),
 * );
 * ```
 */
export type Grant = (resources: string | readonly string[], options?: GrantOptions) => GrantWrapper;

/**
 * Wraps a tool callback of either SDK shape — `(ctx)` for tools without an input schema (call it directly),
 * `(args, ctx)` for tools with one (`.withArgs`) — adding the {@link AccessContext} as the last argument.
 * (Two entry points because TypeScript cannot infer the callback's parameters across overloads.)
 *
 * @example
 * ```ts
 * const wrap = grant('https://api.example.com');
 * const noArgs = wrap(async (ctx, access) => ({ content: [] }));
 * const withArgs = wrap.withArgs(async (args: { q: string }, ctx, access) => ({ content: [] }));
 * ```
 */
export interface GrantWrapper {
  /** For a tool without an input schema: `(ctx, access)`. */
  <R>(handler: (ctx: ServerContext, access: AccessContext) => R): (ctx: ServerContext) => Promise<Awaited<R>>;
  /** For a tool with an input schema: `(args, ctx, access)`. */
  withArgs<Args, R>(
    handler: (args: Args, ctx: ServerContext, access: AccessContext) => R,
  ): (args: Args, ctx: ServerContext) => Promise<Awaited<R>>;
}

const contexts = new WeakMap<object, AccessContext>();
const MOCK = Symbol.for('gatehouse.server.mockAccessContext');
type MockFactory = (resources: readonly string[]) => AccessContext;

/** @internal Used by `gatehouse/testing` to make every `grant()` yield a prepared context. */
export function setAccessContextMock(factory: MockFactory | undefined): void {
  (globalThis as Record<symbol, unknown>)[MOCK] = factory;
}

function currentMock(): MockFactory | undefined {
  return (globalThis as Record<symbol, unknown>)[MOCK] as MockFactory | undefined;
}

/**
 * The {@link AccessContext} a `grant()`-wrapped tool is running with, from its `ctx`: handy in helpers that get
 * the context but not the extra argument.
 *
 * @example
 * ```ts
 * import { getAccessContext } from 'gatehouse/server';
 *
 * function calendarToken(ctx: object): string | undefined {
 *   const access = getAccessContext(ctx);
 *   return access?.hasResourceError('https://calendar.example.com') ? undefined : access?.access('https://calendar.example.com').accessToken;
 * }
 * ```
 */
export function getAccessContext(ctx: object): AccessContext | undefined {
  return contexts.get(ctx);
}

function authInfoOf(ctx: unknown): AuthInfo | undefined {
  if (!ctx || typeof ctx !== 'object') return undefined;
  return (ctx as { http?: { authInfo?: AuthInfo } }).http?.authInfo;
}

/**
 * Builds `grant()` for an authorization server: delegated access for tools (seed: Keycard's `@grant`). Each call
 * of a wrapped tool exchanges the caller's token (RFC 8693) for one token per resource, in parallel, with this
 * server's client credentials; exchanged tokens are cached until shortly before they expire. Failures are
 * recorded in the {@link AccessContext}, never thrown into the tool.
 *
 * @example
 * ```ts
 * import { createGrant } from 'gatehouse/server';
 *
 * const grant = createGrant({
 *   issuer: 'https://auth.example.com',
 *   credentials: { clientId: 'mcp-server', clientSecret: process.env.MCP_CLIENT_SECRET! },
 * });
 *
 * server.registerTool(
 *   'list_events',
 *   { description: 'Lists calendar events' },
 *   grant('https://calendar.example.com', { scopes: ['calendar:read'] })(async (ctx, access) => {
 *     if (access.hasErrors()) return { content: [{ type: 'text', text: JSON.stringify(access.getErrors()) }], isError: true };
 *     const token = access.access('https://calendar.example.com').accessToken;
 *     const events = await fetch('https://calendar.example.com/events', { headers: { authorization: `Bearer ${token}` } });
 *     return { content: [{ type: 'text', text: await events.text() }] };
 *   }),
 * );
 * ```
 */
export function createGrant(options: TokenExchangeOptions | TokenExchangeClient): Grant {
  const exchanger = options instanceof TokenExchangeClient ? options : new TokenExchangeClient(options);
  return (resources, grantOptions = {}) => {
    const list = typeof resources === 'string' ? [resources] : [...resources];
    if (list.length === 0) throw new TypeError('grant: name at least one resource');
    for (const resource of list) assertSecureUrl(resource, 'grant resource');
    const wrap =
      (handler: (...args: unknown[]) => unknown) =>
      async (...args: unknown[]): Promise<unknown> => {
        const ctx = args[args.length - 1];
        let access: AccessContext;
        const mock = currentMock();
        if (mock) access = mock(list);
        else {
          const authInfo = authInfoOf(ctx);
          if (!authInfo?.token) {
            access = new AccessContext();
            for (const resource of list) {
              access.setResourceError(resource, { error: 'invalid_token', message: 'no user token to exchange' });
            }
            access.setError({
              error: 'invalid_token',
              message: 'the tool was called without a verified user token; serve it behind protect()',
            });
          } else {
            const subject = authInfo.extra?.['subject'];
            access = await exchanger.exchangeAll(authInfo.token, list, {
              scopes: grantOptions.scopes,
              subject: typeof subject === 'string' ? subject : undefined,
            });
          }
        }
        if (ctx && typeof ctx === 'object') contexts.set(ctx, access);
        return await handler(...args, access);
      };
    return Object.assign(wrap, { withArgs: wrap }) as unknown as GrantWrapper;
  };
}
