import { protectedResourceMetadataUrl } from '../oauth/discovery.js';
import { OAuthProtocolError } from '../oauth/errors.js';
import type { AuthorizationServerMetadata, ProtectedResourceMetadata } from '../oauth/metadata.js';
import { assertSecureUrl, canonicalResourceUri, sameResource } from '../oauth/resource-uri.js';
import { formatWwwAuthenticate } from '../oauth/www-authenticate.js';
import { discoverAuthorizationServer } from './discovery.js';
import { boundKeyThumbprint, type DpopOptions, dpopChecker, InvalidDpopProofError, UseDpopNonceError } from './dpop.js';
import { InsufficientScopeError, InvalidTokenError } from './errors.js';
import { missingScopes, type ScopeHierarchy } from './scopes.js';
import type { AuthInfo, TokenVerifier } from './verifier.js';

/** A web-standard request handler. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** What the MCP handler receives besides the request. */
export interface McpHandlerOptions {
  authInfo: AuthInfo;
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
  /** Scopes advertised in the metadata. Defaults to `requiredScopes` plus every scope in `toolScopes`. */
  scopesSupported?: string[];
  /** A human-readable name for the metadata document. */
  resourceName?: string;
  /** Extra members of the RFC 9728 document, e.g. `resource_documentation`. */
  metadata?: Partial<ProtectedResourceMetadata>;
  /**
   * Also serve the authorization server's metadata at this server's `/.well-known/oauth-authorization-server`,
   * for clients written against the 2025-03-26 revision of MCP, which looked for it there. `true` fetches it
   * from the first authorization server (and refreshes it every 5 minutes); a document serves that document.
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
  /** True for paths this handler answers itself or serves MCP on: the resource path and the well-known paths. */
  handles(pathname: string): boolean;
}

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, HEAD, OPTIONS',
  'access-control-allow-headers': 'mcp-protocol-version, authorization',
  'access-control-max-age': '86400',
};

/** The SDK's own default body limit; protect() reads the body first when it checks per-tool scopes. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

async function readBody(request: Request): Promise<string | undefined> {
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > MAX_BODY_BYTES) return undefined;
  if (!request.body) return '';
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
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

/** The tool names of every `tools/call` in a JSON-RPC message or batch. */
function calledTools(body: unknown): string[] {
  const messages = Array.isArray(body) ? body : [body];
  const names: string[] = [];
  for (const message of messages) {
    if (message && typeof message === 'object' && (message as { method?: unknown }).method === 'tools/call') {
      const name = (message as { params?: { name?: unknown } }).params?.name;
      if (typeof name === 'string') names.push(name);
    }
  }
  return names;
}

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
  const mirrorPaths = new Set<string>();
  if (options.authorizationServerMetadata) {
    mirrorPaths.add('/.well-known/oauth-authorization-server');
    if (resourcePath !== '/') mirrorPaths.add(`/.well-known/oauth-authorization-server${resourcePath}`);
  }

  const requiredScopes = [...new Set(options.requiredScopes ?? [])];
  const toolScopes = new Map(
    Object.entries(options.toolScopes ?? {}).map(([tool, scopes]) => [tool, [...new Set(scopes)]] as const),
  );
  const hierarchy = options.scopeHierarchy;
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
  const callMcp =
    typeof handler === 'function'
      ? handler
      : (request: Request, init: McpHandlerOptions) => handler.fetch(request, init);
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
    const errorParams = { error: error?.error, error_description: error?.description };
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
    if (mirrorPaths.has(url.pathname)) {
      try {
        return jsonDocument(request.method, await mirroredMetadata());
      } catch {
        return new OAuthProtocolError('temporarily_unavailable', 'the authorization server metadata is unavailable', {
          status: 502,
        }).toResponse(CORS_HEADERS);
      }
    }

    const authorization = request.headers.get('authorization');
    if (!authorization) return challenge();
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
    // Sender-constrained tokens (RFC 9449 §7): a bound token needs its proof, a proof needs a bound token.
    const jkt = boundKeyThumbprint(authInfo.extra?.['claims']);
    if (scheme === 'bearer' && jkt) {
      return challenge(
        new InvalidTokenError('this token is DPoP-bound: present it as Authorization: DPoP with a proof'),
      );
    }
    if (scheme === 'bearer' && dpop.required) {
      return challenge(new InvalidTokenError('this resource accepts only DPoP-bound tokens'));
    }
    if (scheme === 'dpop') {
      if (!jkt) return challenge(new InvalidTokenError('the token is not DPoP-bound: present it as Bearer'), 'dpop');
      try {
        await dpop.verify(request, new URL(url.pathname, resource).href, token, jkt);
      } catch (error) {
        if (error instanceof OAuthProtocolError) return challenge(error, 'dpop');
        throw error;
      }
    }
    if (authInfo.expiresAt !== undefined && authInfo.expiresAt * 1000 <= Date.now()) {
      return challenge(new InvalidTokenError('the token has expired'), scheme);
    }
    // A second line of defence for custom verifiers: a resource they report must be this one.
    const granted = authInfo.resource;
    if (granted && granted.href !== resource && !sameResource(granted, resource)) {
      return challenge(
        new InvalidTokenError(`audience mismatch: expected ${resource}, received ${granted.href}`),
        scheme,
      );
    }

    let needed = requiredScopes;
    let parsedBody: unknown;
    let forward = request;
    if (toolScopes.size && request.method === 'POST') {
      // Read the body once, to find the tools called, and hand it on parsed so the SDK does not parse it again.
      const text = await readBody(request);
      if (text === undefined) {
        return new OAuthProtocolError('invalid_request', `the request body exceeds ${MAX_BODY_BYTES} bytes`, {
          status: 413,
        }).toResponse();
      }
      try {
        parsedBody = JSON.parse(text);
      } catch {
        parsedBody = undefined; // the SDK answers the parse error
      }
      forward = new Request(request, { body: text });
      const perTool = calledTools(parsedBody).flatMap((tool) => toolScopes.get(tool) ?? []);
      if (perTool.length) needed = [...new Set([...requiredScopes, ...perTool])];
    }
    if (needed.length && missingScopes(authInfo.scopes, needed, hierarchy).length) {
      return challenge(new InsufficientScopeError(needed), scheme);
    }
    const init: McpHandlerOptions = { authInfo: { ...authInfo, resourceMetadataUrl } };
    if (parsedBody !== undefined) init.parsedBody = parsedBody;
    const response = await callMcp(forward, init);
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

  return Object.assign(protectedHandler, { resource, resourceMetadataUrl, metadata, handles });
}
