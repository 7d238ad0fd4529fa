import { GatehouseError, OAuthProtocolError } from '../oauth/errors.js';
import type { AuthorizationServerMetadata } from '../oauth/metadata.js';
import { discoverAuthorizationServer } from '../server/discovery.js';
import { type FetchHandler, readBody } from '../server/protect.js';

/** Request headers a token or registration request carries to the AS: the client's own, nothing added. */
const FORWARDED_REQUEST_HEADERS = ['content-type', 'accept', 'authorization', 'dpop'];
/** How long the external AS's metadata is used before it is fetched again. */
const METADATA_TTL_MS = 10 * 60_000;
const METADATA_CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, HEAD, OPTIONS',
  'access-control-allow-headers': 'mcp-protocol-version',
};
/** Token and registration requests are small; a longer body is refused before it is held in memory. */
const MAX_FORWARDED_BODY_BYTES = 64 * 1024;
/** Response headers of the AS that the client needs. */
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'cache-control', 'pragma', 'www-authenticate', 'dpop-nonce'];

/**
 * Serves an external authorization server's endpoints at the gateway's own origin, for clients that assume the MCP
 * server's origin is the authorization server (the 2025-03-26 fallback, or a refresh at `<origin>/token` after a
 * restart): `/.well-known/oauth-authorization-server` (the AS's metadata, endpoints rewritten to the gateway),
 * `/authorize` (a 302 to the AS, query intact) and `/token`, `/register` (the POST body and the client's own
 * headers forwarded as they are). `handles(pathname)` says which paths are its own.
 *
 * The document names the gateway as `issuer`: a client checks RFC 8414 §3.3 against the URL it fetched. Tokens
 * keep the external issuer's `iss`, so `authorization_response_iss_parameter_supported` is left out.
 */
export function sameOriginAuthorizationServer(options: { issuer: string; base: string }): FetchHandler & {
  handles(pathname: string): boolean;
} {
  const { issuer, base } = options;
  const basePath = new URL(base).pathname.replace(/\/+$/, '');
  const metadataPath = `/.well-known/oauth-authorization-server${basePath}`;
  const paths = { authorize: `${basePath}/authorize`, token: `${basePath}/token`, register: `${basePath}/register` };
  // Fetched on first use and again after METADATA_TTL_MS (an AS may move its endpoints); while the AS cannot be
  // reached, the last good document serves on.
  let metadata: Promise<AuthorizationServerMetadata> | undefined;
  let lastGood: AuthorizationServerMetadata | undefined;
  let fetchedAt = 0;
  const upstream = () => {
    if (!metadata || Date.now() - fetchedAt > METADATA_TTL_MS) {
      fetchedAt = Date.now();
      metadata = discoverAuthorizationServer(issuer).then(
        (found) => {
          lastGood = found;
          return found;
        },
        (error: unknown) => {
          metadata = undefined; // try again on the next request
          if (lastGood) return lastGood;
          throw error;
        },
      );
    }
    return metadata;
  };
  const handles = (pathname: string) => pathname === metadataPath || Object.values(paths).includes(pathname);

  const handler: FetchHandler = async (request) => {
    const url = new URL(request.url);
    let as: AuthorizationServerMetadata;
    try {
      as = await upstream();
    } catch (error) {
      const detail = error instanceof GatehouseError ? error.message : 'discovery failed';
      return new OAuthProtocolError('temporarily_unavailable', `authorization server: ${detail}`, {
        status: 503,
      }).toResponse();
    }
    if (url.pathname === metadataPath) {
      // A public document: browser clients (MCP Inspector) read it cross-origin, with a preflight.
      if (request.method === 'OPTIONS') return new Response(null, { status: 204, headers: METADATA_CORS });
      if (request.method !== 'GET' && request.method !== 'HEAD') return methodNotAllowed('GET');
      const { authorization_response_iss_parameter_supported: _iss, ...rest } = as;
      return Response.json(
        {
          ...rest,
          issuer: base,
          authorization_endpoint: `${base}/authorize`,
          token_endpoint: `${base}/token`,
          ...(as.registration_endpoint && { registration_endpoint: `${base}/register` }),
        },
        { headers: { 'cache-control': 'max-age=300', ...METADATA_CORS } },
      );
    }
    if (url.pathname === paths.authorize) {
      if (!as.authorization_endpoint) return notFound();
      // The query goes on byte for byte (after any query the endpoint has of its own).
      const target = new URL(as.authorization_endpoint);
      const query = url.search.slice(1);
      if (query) target.search = target.search ? `${target.search.slice(1)}&${query}` : query;
      return new Response(null, { status: 302, headers: { location: target.href, 'cache-control': 'no-store' } });
    }
    const endpoint = url.pathname === paths.token ? as.token_endpoint : as.registration_endpoint;
    if (!endpoint) return notFound();
    if (request.method !== 'POST') return methodNotAllowed('POST');
    const headers = new Headers();
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    const body = await readBody(request, MAX_FORWARDED_BODY_BYTES);
    if (body === undefined) {
      return new OAuthProtocolError('invalid_request', `the request body exceeds ${MAX_FORWARDED_BODY_BYTES} bytes`, {
        status: 413,
      }).toResponse();
    }
    let answer: Response;
    try {
      answer = await fetch(endpoint, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
      });
    } catch {
      return new OAuthProtocolError('temporarily_unavailable', 'the authorization server cannot be reached', {
        status: 503,
      }).toResponse();
    }
    const out = new Headers();
    for (const name of FORWARDED_RESPONSE_HEADERS) {
      const value = answer.headers.get(name);
      if (value !== null) out.set(name, value);
    }
    return new Response(await answer.arrayBuffer(), { status: answer.status, headers: out });
  };
  return Object.assign(handler, { handles });
}

const notFound = () => new OAuthProtocolError('invalid_request', 'not found', { status: 404 }).toResponse();
const methodNotAllowed = (allow: string) =>
  new Response(null, { status: 405, headers: { allow, 'cache-control': 'no-store' } });
