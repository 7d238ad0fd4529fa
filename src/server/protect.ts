import { protectedResourceMetadataUrl } from '../oauth/discovery.js';
import { OAuthProtocolError } from '../oauth/errors.js';
import type { AuthorizationServerMetadata, ProtectedResourceMetadata } from '../oauth/metadata.js';
import { assertSecureUrl, canonicalResourceUri, sameResource } from '../oauth/resource-uri.js';
import { formatWwwAuthenticate } from '../oauth/www-authenticate.js';
import { discoverAuthorizationServer } from './discovery.js';
import { boundKeyThumbprint, type DpopOptions, dpopChecker, InvalidDpopProofError, UseDpopNonceError } from './dpop.js';
import { InsufficientScopeError, InsufficientUserAuthenticationError, InvalidTokenError } from './errors.js';
import { missingScopes, type ScopeHierarchy } from './scopes.js';
import { filterToolLists } from './tool-list-filter.js';
import { type AuthenticationRequirement, assertRequirement, checkUserAuthentication } from './user-authentication.js';
import type { AuthInfo, TokenVerifier } from './verifier.js';

/** A web-standard request handler. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** What the MCP handler receives besides the request. */
export interface McpHandlerOptions {
  /** The verified token; absent on an anonymous request to a public tool or method (see `publicTools`). */
  authInfo?: AuthInfo;
  /** The JSON body, when `protect()` already parsed it (to check per-tool scopes). */
  parsedBody?: unknown;
}

/** The MCP handler `protect()` wraps: an SDK v2 `createMcpHandler()` result, or any function of that shape. */
export type McpRequestHandler =
  | ((request: Request, options: McpHandlerOptions) => Promise<Response>)
  | { fetch(request: Request, options?: McpHandlerOptions): Promise<Response> };

/** Options of {@link protect}. */
export interface ProtectOptions {
  /**
   * This server's canonical URL, e.g. `https://mcp.example.com/mcp`: the URL clients connect to. Tokens must
   * carry it as their audience. It is normalised (lower-case host, no default port, no trailing slash), and
   * must be https unless it is on loopback.
   */
  resource: string | URL;
  /** Issuers of the authorization servers that may mint tokens for this resource. */
  authorizationServers: string[];
  /** Verifies bearer tokens, e.g. {@link jwtVerifier} or {@link introspectionVerifier}. */
  verifier: TokenVerifier;
  /** Scopes every request needs. Missing ones answer 403 `insufficient_scope`. */
  requiredScopes?: string[];
  /**
   * Scopes each tool needs on top of `requiredScopes`, by tool name. A `tools/call` without them answers 403
   * `insufficient_scope` naming every scope the call needs. (For resources and prompts, or decisions that need
   * the arguments, use the SDK's `scopeChallenge` with {@link requireScopes}.)
   */
  toolScopes?: Record<string, string[]>;
  /** Scopes that imply others, e.g. `{ admin: ['read', 'write'] }`. Applied to every scope check. */
  scopeHierarchy?: ScopeHierarchy;
  /**
   * Tools anyone may call, without a token. Naming any (or any `publicMethods`) lets anonymous callers connect:
   * `initialize`, `notifications/initialized`, `server/discover`, `ping` and `tools/list` then work without a
   * token, `tools/list` lists only what the caller may call (the public tools, plus with a token the tools its
   * scopes allow), and everything else still answers the 401 challenge. A token that is sent is always verified:
   * an invalid or expired one answers 401, never a downgrade to anonymous.
   */
  publicTools?: string[];
  /** JSON-RPC methods anyone may call without a token, e.g. `['prompts/list', 'resources/list']`. See `publicTools`. */
  publicMethods?: string[];
  /**
   * How recent or strong the user's login must be for a tool (RFC 9470), by tool name: `maxAge` seconds since the
   * login (`auth_time`), or one of `acrValues` (`acr`). A call whose token falls short answers 401
   * `insufficient_user_authentication` with `max_age` / `acr_values`, and the Gatehouse client logs in again with
   * them. Off unless given.
   */
  toolAuthentication?: Record<string, AuthenticationRequirement>;
  /** Scopes advertised in the metadata. Defaults to `requiredScopes` plus every scope in `toolScopes`. */
  scopesSupported?: string[];
  /** A human-readable name for the metadata document. */
  resourceName?: string;
  /** Extra members of the RFC 9728 document, e.g. `resource_documentation`. */
  metadata?: Partial<ProtectedResourceMetadata>;
  /**
   * The legacy discovery mirror: also serve the authorization server's metadata on this server, for clients
   * written against the 2025-03-26 revision of MCP, which looked for it here — at `/.well-known/oauth-authorization-server`
   * and `/.well-known/openid-configuration`, each path-inserted and path-appended too — and the protected-resource
   * metadata path-appended (`/mcp/.well-known/oauth-protected-resource`). `true` fetches the AS metadata from the
   * first authorization server (and refreshes it every 5 minutes); a document serves that document.
   */
  authorizationServerMetadata?: boolean | AuthorizationServerMetadata;
  /**
   * DPoP (RFC 9449). Always on: a token presented as `Authorization: DPoP` is checked with its proof (`htm`, `htu`,
   * `iat`, `jti` replay, `ath`, `cnf.jkt`), and a DPoP-bound token presented as `Bearer` is refused. These options
   * require DPoP, choose algorithms, share the replay cache between instances and turn server nonces on.
   */
  dpop?: DpopOptions;
}

/** The fetch handler {@link protect} returns, with what adapters need to route to it. */
export interface ProtectedHandler extends FetchHandler {
  /** The canonical resource URL. */
  readonly resource: string;
  /** The URL of this resource's RFC 9728 metadata document (path-inserted form). */
  readonly resourceMetadataUrl: string;
  /** The RFC 9728 document served. */
  readonly metadata: ProtectedResourceMetadata;
  /**
   * True for paths this handler answers itself or serves MCP on: the resource path and the well-known paths.
   * Any other path answers 404.
   */
  handles(pathname: string): boolean;
  /**
   * For a server that reads a `POST` itself on its hot path (the gateway): the verified token, ready to hand to
   * the MCP handler, when a `Bearer` token passes every check that needs no body; `undefined` whenever the full
   * handler must answer instead (a refusal, DPoP, anonymous access), which then answers exactly as it always does.
   */
  authorizeBearer(token: string): Promise<AuthInfo | undefined>;
  /** Whether `authInfo` may make the calls in a parsed body (scopes per tool, login strength); see `authorizeBearer`. */
  permits(authInfo: AuthInfo, parsedBody: unknown): boolean;
  /** Whether `authInfo` may use the session `sessionId` (the one who opened it, or a session not seen here). */
  ownsSession(sessionId: string, authInfo: AuthInfo): boolean;
}

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, HEAD, OPTIONS',
  'access-control-allow-headers': 'mcp-protocol-version, authorization',
  'access-control-max-age': '86400',
};

/** The SDK's own default body limit; protect() reads the body first when it checks per-tool scopes. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** A request's body as text, or undefined when it is longer than `limit` bytes (read no further). */
export async function readBody(request: Request, limit = MAX_BODY_BYTES): Promise<string | undefined> {
  const length = request.headers.get('content-length');
  const declared = Number(length ?? 0);
  if (declared > limit) return undefined;
  // A declared length within the limit is all the server reads (HTTP servers hold the body to it): the body is
  // read at once, which adapters such as @hono/node-server do straight from the socket, without a web stream.
  if (length !== null && Number.isSafeInteger(declared)) {
    const text = await request.text();
    return Buffer.byteLength(text) > limit ? undefined : text;
  }
  if (!request.body) return '';
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const AUTHORIZATION = /^(Bearer|DPoP)[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i;
const MIRROR_TTL_MS = 5 * 60_000;

function jsonDocument(method: string, body: string): Response {
  if (method === 'OPTIONS') return new Response(null, { status: 204, headers: CORS_HEADERS });
  if (method === 'GET' || method === 'HEAD') {
    return new Response(method === 'HEAD' ? null : body, {
      headers: { 'content-type': 'application/json', 'cache-control': 'max-age=300', ...CORS_HEADERS },
    });
  }
  return new Response(null, { status: 405, headers: { allow: 'GET, HEAD, OPTIONS', ...CORS_HEADERS } });
}

/** Sessions whose owner protect() remembers; the oldest are forgotten first (their ids then check nothing). */
const MAX_TRACKED_SESSIONS = 100_000;

/** The answer to a session id that is unknown, or not the caller's: what the SDK answers for an unknown one. */
function sessionNotFound(): Response {
  return new Response(
    JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }),
    {
      status: 404,
      headers: { 'content-type': 'application/json' },
    },
  );
}

type RpcMessage = {
  id?: string | number;
  method?: unknown;
  params?: { name?: unknown };
  result?: unknown;
  error?: unknown;
};

function messagesOf(body: unknown): RpcMessage[] {
  const messages = Array.isArray(body) ? body : [body];
  return messages.filter((m): m is RpcMessage => typeof m === 'object' && m !== null);
}

/** The tool names of every `tools/call` in a JSON-RPC message or batch. */
function calledTools(body: unknown): string[] {
  const names: string[] = [];
  for (const message of messagesOf(body)) {
    const name = message.method === 'tools/call' ? message.params?.name : undefined;
    if (typeof name === 'string') names.push(name);
  }
  return names;
}

/** The ids of the `tools/list` requests in a message or batch: their answers are narrowed to what may be called. */
function toolListIds(body: unknown): Set<string | number> {
  const ids = new Set<string | number>();
  for (const message of messagesOf(body)) {
    if (message.method === 'tools/list' && (typeof message.id === 'string' || typeof message.id === 'number')) {
      ids.add(message.id);
    }
  }
  return ids;
}

/** What an anonymous caller may always do once anything is public: connect, and see what is public. */
const ANONYMOUS_METHODS = [
  'initialize',
  'notifications/initialized',
  'notifications/cancelled',
  'server/discover',
  'ping',
  'tools/list',
];

/**
 * Puts OAuth in front of an MCP handler. The returned fetch handler serves RFC 9728 protected-resource metadata
 * (at the path-inserted and root well-known URLs, with CORS), answers requests without a valid token with a 401
 * challenge that points at that metadata, refuses tokens minted for another audience, checks the scopes the
 * server and each tool need (403 `insufficient_scope` naming all of them), and hands the verified identity to
 * the MCP handler as `authInfo` — tools read it as `ctx.http.authInfo`.
 *
 * @example
 * ```ts
 * import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
 * import { jwtVerifier, protect } from 'gatehouse/server';
 *
 * const mcp = createMcpHandler(() => new McpServer({ name: 'example', version: '1.0.0' }));
 * const handler = protect(mcp, {
 *   resource: 'https://mcp.example.com/mcp',
 *   authorizationServers: ['https://auth.example.com'],
 *   verifier: jwtVerifier({ issuer: 'https://auth.example.com' }),
 *   requiredScopes: ['mcp:tools'],
 *   toolScopes: { delete_repo: ['repo:delete'] },
 *   scopeHierarchy: { admin: ['repo:delete'] },
 * });
 * export default { fetch: handler }; // Workers, Bun, Deno; see toNodeListener, expressHandler, honoMiddleware
 * ```
 */
export function protect(handler: McpRequestHandler, options: ProtectOptions): ProtectedHandler {
  const resource = canonicalResourceUri(options.resource);
  assertSecureUrl(resource, 'resource');
  if (!Array.isArray(options.authorizationServers) || options.authorizationServers.length === 0) {
    throw new TypeError('protect: authorizationServers must name at least one issuer');
  }
  for (const issuer of options.authorizationServers) assertSecureUrl(issuer, 'authorization server');
  if (!options.verifier || typeof options.verifier.verify !== 'function') {
    throw new TypeError('protect: verifier must be a TokenVerifier (an object with verify(token))');
  }

  const resourceMetadataUrl = protectedResourceMetadataUrl(resource);
  const resourcePath = new URL(resource).pathname;
  const metadataPaths = new Set([
    new URL(resourceMetadataUrl).pathname,
    '/.well-known/oauth-protected-resource',
    '/.well-known/oauth-protected-resource/',
  ]);
  // The legacy mirror answers every URL clients of the 2025-03-26 era probe (seed 003's Cursor log lists them):
  // the AS metadata under both well-known names, path-inserted and path-appended, and the path-appended RFC 9728 URL.
  const mirrorPaths = new Set<string>();
  if (options.authorizationServerMetadata) {
    for (const name of ['oauth-authorization-server', 'openid-configuration']) {
      mirrorPaths.add(`/.well-known/${name}`);
      if (resourcePath !== '/') {
        mirrorPaths.add(`/.well-known/${name}${resourcePath}`);
        mirrorPaths.add(`${resourcePath}/.well-known/${name}`);
      }
    }
    if (resourcePath !== '/') metadataPaths.add(`${resourcePath}/.well-known/oauth-protected-resource`);
  }

  const requiredScopes = [...new Set(options.requiredScopes ?? [])];
  const toolScopes = new Map(
    Object.entries(options.toolScopes ?? {}).map(([tool, scopes]) => [tool, [...new Set(scopes)]] as const),
  );
  const hierarchy = options.scopeHierarchy;
  const publicTools = new Set(options.publicTools ?? []);
  const publicMethods = new Set([...(options.publicMethods ?? []), ...ANONYMOUS_METHODS]);
  const anonymousAllowed = publicTools.size > 0 || (options.publicMethods?.length ?? 0) > 0;
  const toolAuthentication = new Map(Object.entries(options.toolAuthentication ?? {}));
  for (const [tool, requirement] of toolAuthentication) {
    assertRequirement(`protect: toolAuthentication.${tool}`, requirement);
  }
  for (const tool of publicTools) {
    if (toolScopes.get(tool)?.length || toolAuthentication.has(tool)) {
      throw new TypeError(
        `protect: ${tool} is public, so it cannot also need scopes or a login (toolScopes, toolAuthentication)`,
      );
    }
  }
  /** Public: a method anyone may call, a public tool's call, or a message answering the server (no method). */
  const isPublic = (message: RpcMessage): boolean =>
    message.method === undefined
      ? message.result !== undefined || message.error !== undefined
      : message.method === 'tools/call'
        ? typeof message.params?.name === 'string' && publicTools.has(message.params.name)
        : typeof message.method === 'string' && publicMethods.has(message.method);
  /** Whether `tools/list` shows a tool: public ones to anyone, others to tokens whose scopes allow the call. */
  const visibleTo =
    (authInfo: AuthInfo | undefined) =>
    (tool: string): boolean =>
      publicTools.has(tool) ||
      (authInfo !== undefined &&
        missingScopes(authInfo.scopes, [...requiredScopes, ...(toolScopes.get(tool) ?? [])], hierarchy).length === 0);
  const scopesSupported = options.scopesSupported ?? [
    ...new Set([...requiredScopes, ...[...toolScopes.values()].flat()]),
  ];
  const dpop = dpopChecker(options.dpop);
  const metadata: ProtectedResourceMetadata = {
    ...options.metadata,
    resource,
    authorization_servers: options.authorizationServers,
    ...(scopesSupported.length ? { scopes_supported: scopesSupported } : {}),
    bearer_methods_supported: ['header'],
    ...(options.resourceName ? { resource_name: options.resourceName } : {}),
    dpop_signing_alg_values_supported: dpop.algorithms,
    ...(dpop.required ? { dpop_bound_access_tokens_required: true } : {}),
  };
  const metadataBody = JSON.stringify(metadata);
  const scopeParam = requiredScopes.length ? requiredScopes.join(' ') : undefined;
  const callHandler =
    typeof handler === 'function'
      ? handler
      : (request: Request, init: McpHandlerOptions) => handler.fetch(request, init);
  // A session belongs to whoever opened it (subject and client), as MCP's security best practices ask: the session
  // id presented with anyone else's token, or with none, answers 404 as an unknown session would, so a leaked id is
  // no way into another user's session. A session opened anonymously (public tools) is taken over by the first
  // token that continues it.
  const sessionOwners = new Map<string, string>();
  const ownerOf = (authInfo: AuthInfo | undefined) =>
    authInfo ? `${String(authInfo.extra?.['subject'] ?? '')}\n${authInfo.clientId}` : '';
  const callMcp = async (request: Request, init: McpHandlerOptions): Promise<Response> => {
    const owner = ownerOf(init.authInfo);
    const id = request.headers.get('mcp-session-id');
    const known = id === null ? undefined : sessionOwners.get(id);
    if (id !== null && known !== undefined && known !== owner) {
      if (known !== '' || owner === '') return sessionNotFound();
      sessionOwners.set(id, owner);
    }
    const response = await callHandler(request, init);
    // Only a request outside a known session opens one (reading the answer's headers is not free on a hot path).
    const opened = known === undefined ? response.headers.get('mcp-session-id') : null;
    if (opened && !sessionOwners.has(opened)) {
      if (sessionOwners.size >= MAX_TRACKED_SESSIONS) sessionOwners.delete(sessionOwners.keys().next().value!);
      sessionOwners.set(opened, owner);
    }
    if (id !== null && request.method === 'DELETE' && response.ok) sessionOwners.delete(id);
    return response;
  };
  const verifyContext = { resource };

  let mirror: { body: Promise<string>; fetchedAt: number } | undefined;
  function mirroredMetadata(): Promise<string> {
    const configured = options.authorizationServerMetadata;
    if (typeof configured === 'object') return Promise.resolve(JSON.stringify(configured));
    if (!mirror || Date.now() - mirror.fetchedAt > MIRROR_TTL_MS) {
      const body = discoverAuthorizationServer(options.authorizationServers[0]!).then((m) => JSON.stringify(m));
      const entry = { body, fetchedAt: Date.now() };
      body.catch(() => {
        if (mirror === entry) mirror = undefined;
      });
      mirror = entry;
    }
    return mirror.body;
  }

  /**
   * The 401/403 answer: a `Bearer` challenge (unless DPoP is required) and a `DPoP` challenge with `algs`; the
   * error goes on the challenge of the scheme the client used (DPoP errors always on the DPoP one).
   */
  function challenge(error?: OAuthProtocolError, scheme: 'bearer' | 'dpop' = 'bearer'): Response {
    const onDpop =
      dpop.required ||
      scheme === 'dpop' ||
      error instanceof InvalidDpopProofError ||
      error instanceof UseDpopNonceError;
    const scope = error instanceof InsufficientScopeError ? error.requiredScopes.join(' ') : scopeParam;
    const stepUp = error instanceof InsufficientUserAuthenticationError ? error : undefined;
    const errorParams = {
      error: error?.error,
      error_description: error?.description,
      // RFC 9470 §3: what the next login must satisfy.
      acr_values: stepUp?.acrValues?.join(' '),
      max_age: stepUp?.maxAge === undefined ? undefined : String(stepUp.maxAge),
    };
    const challenges: string[] = [];
    if (!dpop.required) {
      challenges.push(
        formatWwwAuthenticate('Bearer', {
          ...(onDpop ? {} : errorParams),
          scope,
          resource_metadata: resourceMetadataUrl,
        }),
      );
    }
    challenges.push(
      formatWwwAuthenticate('DPoP', {
        ...(onDpop ? errorParams : {}),
        ...(dpop.required ? { scope, resource_metadata: resourceMetadataUrl } : {}),
        algs: dpop.algorithms.join(' '),
      }),
    );
    const headers: Record<string, string> = { 'www-authenticate': challenges.join(', ') };
    const nonce = dpop.nonce();
    if (nonce) headers['dpop-nonce'] = nonce;
    const body = error ?? new InvalidTokenError('a bearer token is required');
    return body.toResponse(headers);
  }

  async function protectedHandler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (metadataPaths.has(url.pathname)) return jsonDocument(request.method, metadataBody);
    // Not ours: a 401 here would send clients into a login that can never help.
    if (!handles(url.pathname)) {
      return Response.json(
        { error: 'not_found', error_description: `no resource at ${url.pathname}` },
        { status: 404 },
      );
    }
    if (mirrorPaths.has(url.pathname)) {
      try {
        return jsonDocument(request.method, await mirroredMetadata());
      } catch {
        return new OAuthProtocolError('temporarily_unavailable', 'the authorization server metadata is unavailable', {
          status: 502,
        }).toResponse(CORS_HEADERS);
      }
    }

    // The body is read once, when a rule needs to know what is called, and handed on parsed.
    let read: Promise<{ text: string; parsed: unknown } | undefined> | undefined;
    const body = () => {
      read ??= readBody(request).then((text) => {
        if (text === undefined) return undefined;
        try {
          return { text, parsed: JSON.parse(text) as unknown };
        } catch {
          return { text, parsed: undefined }; // the SDK answers the parse error
        }
      });
      return read;
    };
    const tooLarge = () =>
      new OAuthProtocolError('invalid_request', `the request body exceeds ${MAX_BODY_BYTES} bytes`, {
        status: 413,
      }).toResponse();

    const authorization = request.headers.get('authorization');
    if (!authorization) {
      if (!anonymousAllowed) return challenge();
      if (request.method !== 'POST') return callMcp(request, {}); // session streams and ends (GET, DELETE)
      const read = await body();
      if (!read) return tooLarge();
      const messages = read.parsed === undefined ? [] : messagesOf(read.parsed);
      if (messages.length === 0 || !messages.every(isPublic)) return challenge();
      const response = await callMcp(new Request(request, { body: read.text }), { parsedBody: read.parsed });
      return filterToolLists(response, toolListIds(read.parsed), visibleTo(undefined));
    }
    const match = AUTHORIZATION.exec(authorization);
    if (!match) return challenge(new InvalidTokenError('the Authorization header is not a Bearer or DPoP token'));
    const scheme = match[1]!.toLowerCase() as 'bearer' | 'dpop';
    const token = match[2]!;

    let authInfo: AuthInfo;
    try {
      authInfo = await options.verifier.verify(token, verifyContext);
    } catch (error) {
      if (error instanceof OAuthProtocolError) {
        return error.status === 401 || error.status === 403 ? challenge(error, scheme) : error.toResponse();
      }
      return new OAuthProtocolError('server_error', 'token verification failed', { cause: error }).toResponse();
    }
    const binding = bindingRefusal(authInfo, scheme);
    if (binding) return challenge(binding, scheme);
    if (scheme === 'dpop') {
      try {
        await dpop.verify(
          request,
          new URL(url.pathname, resource).href,
          token,
          boundKeyThumbprint(authInfo.extra?.['claims'])!,
        );
      } catch (error) {
        if (error instanceof OAuthProtocolError) {
          return error.status === 401 ? challenge(error, 'dpop') : error.toResponse();
        }
        throw error;
      }
    }
    const invalid = validityRefusal(authInfo);
    if (invalid) return challenge(invalid, scheme);

    let needed = requiredScopes;
    let parsedBody: unknown;
    let forward = request;
    let called: string[] = [];
    if ((toolScopes.size || toolAuthentication.size || anonymousAllowed) && request.method === 'POST') {
      const read = await body();
      if (!read) return tooLarge();
      parsedBody = read.parsed;
      forward = new Request(request, { body: read.text });
      called = calledTools(parsedBody);
      const messages = parsedBody === undefined ? [] : messagesOf(parsedBody);
      // Public calls need no scope, whoever makes them.
      if (anonymousAllowed && messages.length > 0 && messages.every(isPublic)) needed = [];
      const perTool = called.flatMap((tool) => toolScopes.get(tool) ?? []);
      if (perTool.length) needed = [...new Set([...needed, ...perTool])];
    }
    const refused = callRefusal(authInfo, needed, called);
    if (refused) return challenge(refused, scheme);
    const init: McpHandlerOptions = { authInfo: { ...authInfo, resourceMetadataUrl } };
    if (parsedBody !== undefined) init.parsedBody = parsedBody;
    let response = await callMcp(forward, init);
    if (anonymousAllowed && parsedBody !== undefined) {
      response = await filterToolLists(response, toolListIds(parsedBody), visibleTo(authInfo));
    }
    const nonce = scheme === 'dpop' ? dpop.nonce() : undefined;
    if (!nonce) return response;
    // A fresh nonce on every DPoP answer (RFC 9449 §8.2), so clients rarely meet use_dpop_nonce.
    const withNonce = new Response(response.body, response);
    withNonce.headers.set('dpop-nonce', nonce);
    return withNonce;
  }

  const handles = (pathname: string): boolean =>
    metadataPaths.has(pathname) ||
    mirrorPaths.has(pathname) ||
    resourcePath === '/' ||
    pathname === resourcePath ||
    pathname === `${resourcePath}/`;

  /** Sender-constrained tokens (RFC 9449 §7): a bound token needs its proof, a proof needs a bound token. */
  function bindingRefusal(authInfo: AuthInfo, scheme: 'bearer' | 'dpop'): InvalidTokenError | undefined {
    const jkt = boundKeyThumbprint(authInfo.extra?.['claims']);
    if (scheme === 'bearer' && jkt) {
      return new InvalidTokenError('this token is DPoP-bound: present it as Authorization: DPoP with a proof');
    }
    if (scheme === 'bearer' && dpop.required)
      return new InvalidTokenError('this resource accepts only DPoP-bound tokens');
    if (scheme === 'dpop' && !jkt) return new InvalidTokenError('the token is not DPoP-bound: present it as Bearer');
    return undefined;
  }

  /** An expired token, or one a custom verifier reports for another resource (a second line of defence). */
  function validityRefusal(authInfo: AuthInfo): InvalidTokenError | undefined {
    if (authInfo.expiresAt !== undefined && authInfo.expiresAt * 1000 <= Date.now()) {
      return new InvalidTokenError('the token has expired');
    }
    const granted = authInfo.resource;
    if (granted && granted.href !== resource && !sameResource(granted, resource)) {
      return new InvalidTokenError(`audience mismatch: expected ${resource}, received ${granted.href}`);
    }
    return undefined;
  }

  /** The scopes `needed` and the login each called tool asks for, as the refusal to answer with, if any. */
  function callRefusal(authInfo: AuthInfo, needed: string[], called: string[]): OAuthProtocolError | undefined {
    if (needed.length && missingScopes(authInfo.scopes, needed, hierarchy).length) {
      return new InsufficientScopeError(needed);
    }
    for (const tool of called) {
      const requirement = toolAuthentication.get(tool);
      const shortfall = requirement && checkUserAuthentication(authInfo, requirement);
      if (shortfall) return shortfall;
    }
    return undefined;
  }

  async function authorizeBearer(token: string): Promise<AuthInfo | undefined> {
    if (anonymousAllowed || dpop.required) return undefined;
    let authInfo: AuthInfo;
    try {
      authInfo = await options.verifier.verify(token, verifyContext);
    } catch {
      return undefined;
    }
    if (bindingRefusal(authInfo, 'bearer') || validityRefusal(authInfo)) return undefined;
    return { ...authInfo, resourceMetadataUrl };
  }

  function permits(authInfo: AuthInfo, parsedBody: unknown): boolean {
    const called = calledTools(parsedBody);
    const perTool = called.flatMap((tool) => toolScopes.get(tool) ?? []);
    const needed = perTool.length ? [...new Set([...requiredScopes, ...perTool])] : requiredScopes;
    return callRefusal(authInfo, needed, called) === undefined;
  }

  function ownsSession(sessionId: string, authInfo: AuthInfo): boolean {
    const known = sessionOwners.get(sessionId);
    return known === undefined || known === ownerOf(authInfo);
  }

  return Object.assign(protectedHandler, {
    resource,
    resourceMetadataUrl,
    metadata,
    handles,
    authorizeBearer,
    permits,
    ownsSession,
  });
}
