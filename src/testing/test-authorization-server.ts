import { randomUUID } from 'node:crypto';
import {
  type CryptoKey,
  decodeJwt,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';
import { constantTimeEqual } from '../oauth/constant-time.js';
import { OAuthProtocolError } from '../oauth/errors.js';
import type { AuthorizationServerMetadata } from '../oauth/metadata.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../oauth/token-exchange.js';
import { listen, type RunningServer, toNodeListener } from '../server/node.js';

/** A client the test AS knows: a secret (`client_secret_basic` / `client_secret_post`) or a public JWK. */
export interface TestClient {
  clientId: string;
  clientSecret?: string;
  /** Public key for `private_key_jwt`. */
  publicKey?: JWK;
}

/** What a token-exchange request asked for, after client authentication and subject-token checks. */
export interface TokenExchangeRequest {
  clientId: string;
  subject: string;
  subjectToken: string;
  /** The subject token's claims. */
  subjectClaims: JWTPayload;
  resource: string | undefined;
  scopes: string[];
}

/** How the test AS answers a token exchange: a token (fields optional) or an OAuth error. */
export type TokenExchangeOutcome = TokenExchangeSuccess | TokenExchangeFailure;

/** A token-exchange success; every field has a default (a freshly minted JWT for the resource, 300 s). */
export interface TokenExchangeSuccess {
  accessToken?: string;
  expiresIn?: number;
  scope?: string;
  tokenType?: string;
  error?: undefined;
}

/** A token-exchange failure, answered as an OAuth error (status default 400). */
export interface TokenExchangeFailure {
  error: string;
  errorDescription?: string;
  status?: number;
}

/** Options of {@link startTestAuthorizationServer}. */
export interface TestAuthorizationServerOptions {
  /** Clients allowed to introspect and exchange tokens. */
  clients?: TestClient[];
  /** Decides token-exchange outcomes. Default: mint a token for the requested resource, lifetime 300 s. */
  onTokenExchange?: (request: TokenExchangeRequest) => TokenExchangeOutcome | Promise<TokenExchangeOutcome>;
  /** Port to listen on (127.0.0.1). Default: a free one. */
  port?: number;
}

/** Options of {@link TestAuthorizationServer.mintToken}. */
export interface MintTokenOptions {
  /** `sub`. Default `user`. */
  subject?: string;
  /** `scope`. Default none. */
  scopes?: string[];
  /** `aud`: the resource the token is for. */
  audience: string | string[];
  /** Seconds until `exp`; negative mints an expired token. Default 300. */
  expiresIn?: number;
  /** `client_id`. Default `test-client`. */
  clientId?: string;
  /** Other claims. */
  claims?: JWTPayload;
  /** `iss` override, to test issuer checks. */
  issuer?: string;
  /** Sign with a key the JWKS does not publish, to test key checks. */
  untrustedKey?: boolean;
  /** The JOSE `typ` header. Default `at+jwt` (RFC 9068); `null` omits it, as some foreign issuers do. */
  typ?: string | null;
}

/** A running in-process authorization server for tests. */
export interface TestAuthorizationServer {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly tokenEndpoint: string;
  readonly introspectionEndpoint: string;
  readonly revocationEndpoint: string;
  readonly metadata: AuthorizationServerMetadata;
  /** Requests served, by path (e.g. `requests['/token']`). */
  readonly requests: Record<string, number>;
  /** Mints a signed JWT access token (RFC 9068). */
  mintToken(options: MintTokenOptions): Promise<string>;
  /** Revokes a token: introspection reports it inactive and it cannot be exchanged. */
  revoke(token: string): void;
  /** Publishes a new signing key (the old one is dropped): tokens minted afterwards carry its `kid`. */
  rotateKeys(): Promise<void>;
  /** Adds or replaces a client. */
  registerClient(client: TestClient): void;
  /** Replaces the token-exchange policy. */
  setTokenExchangeHandler(handler: TestAuthorizationServerOptions['onTokenExchange']): void;
  /** Makes every endpoint answer 503 (true) or work again (false): the AS "down". */
  setUnavailable(unavailable: boolean): void;
  close(): Promise<void>;
}

interface SigningKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  kid: string;
}

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = randomUUID();
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }, kid };
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

/**
 * Starts an authorization server for tests, on 127.0.0.1: RFC 8414 metadata, a JWKS, JWT access tokens you mint
 * directly, RFC 7662 introspection, RFC 7009 revocation, and RFC 8693 token exchange whose outcome you decide.
 * Client authentication: `client_secret_basic`, `client_secret_post`, `private_key_jwt`.
 *
 * @example
 * ```ts
 * import { startTestAuthorizationServer } from 'gatehouse/testing';
 *
 * const as = await startTestAuthorizationServer({ clients: [{ clientId: 'mcp', clientSecret: 's3cret' }] });
 * const token = await as.mintToken({ subject: 'alice', scopes: ['read'], audience: 'http://127.0.0.1:3000/mcp' });
 * as.setTokenExchangeHandler(({ resource }) =>
 *   resource === 'https://down.example.com' ? { error: 'invalid_target', errorDescription: 'unknown resource' } : {},
 * );
 * await as.close();
 * ```
 */
export async function startTestAuthorizationServer(
  options: TestAuthorizationServerOptions = {},
): Promise<TestAuthorizationServer> {
  let key = await newKey();
  const untrusted = await newKey();
  const clients = new Map((options.clients ?? []).map((c) => [c.clientId, c]));
  const revoked = new Set<string>();
  const usedAssertions = new Set<string>();
  const requests: Record<string, number> = {};
  let onTokenExchange = options.onTokenExchange;
  let unavailable = false;
  let issuer = '';

  const endpoints = () => ({
    jwksUri: `${issuer}/jwks`,
    tokenEndpoint: `${issuer}/token`,
    introspectionEndpoint: `${issuer}/introspect`,
    revocationEndpoint: `${issuer}/revoke`,
  });

  async function mintToken(mint: MintTokenOptions): Promise<string> {
    const signing = mint.untrustedKey ? untrusted : key;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      ...mint.claims,
      ...(mint.scopes?.length ? { scope: mint.scopes.join(' ') } : {}),
      client_id: mint.clientId ?? 'test-client',
    })
      .setProtectedHeader({
        alg: 'ES256',
        kid: signing.kid,
        ...(mint.typ === null ? {} : { typ: mint.typ ?? 'at+jwt' }),
      })
      .setIssuer(mint.issuer ?? issuer)
      .setSubject(mint.subject ?? 'user')
      .setAudience(mint.audience)
      .setIssuedAt(now)
      .setExpirationTime(now + (mint.expiresIn ?? 300))
      .setJti(randomUUID())
      .sign(signing.privateKey);
  }

  /** Our own, unrevoked, unexpired token's claims, or undefined. */
  async function check(token: string): Promise<JWTPayload | undefined> {
    if (revoked.has(token)) return undefined;
    try {
      const { payload } = await jwtVerify(token, await importJWK(key.publicJwk, 'ES256'), { issuer });
      return payload;
    } catch {
      return undefined;
    }
  }

  async function authenticate(request: Request, form: URLSearchParams): Promise<TestClient> {
    const invalid = (why: string) => new OAuthProtocolError('invalid_client', why, { status: 401 });
    const header = request.headers.get('authorization');
    if (header?.startsWith('Basic ')) {
      const decoded = Buffer.from(header.slice(6), 'base64').toString();
      const colon = decoded.indexOf(':');
      const id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
      const secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
      const client = clients.get(id);
      if (!client?.clientSecret || !constantTimeEqual(secret, client.clientSecret))
        throw invalid('client authentication failed');
      return client;
    }
    const assertion = form.get('client_assertion');
    if (assertion) {
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
        throw invalid('unsupported client_assertion_type');
      }
      const id = decodeJwt(assertion).iss;
      const client = id ? clients.get(id) : undefined;
      if (!client?.publicKey) throw invalid('client authentication failed');
      try {
        const { payload } = await jwtVerify(
          assertion,
          await importJWK(client.publicKey, client.publicKey.alg ?? 'ES256'),
          {
            issuer: client.clientId,
            subject: client.clientId,
            audience: [issuer, endpoints().tokenEndpoint, endpoints().introspectionEndpoint, new URL(request.url).href],
          },
        );
        if (!payload.jti || usedAssertions.has(payload.jti)) throw new Error('replayed assertion');
        usedAssertions.add(payload.jti);
      } catch {
        throw invalid('client authentication failed');
      }
      return client;
    }
    const id = form.get('client_id');
    const secret = form.get('client_secret');
    const client = id ? clients.get(id) : undefined;
    if (!client?.clientSecret || secret === null || !constantTimeEqual(secret, client.clientSecret)) {
      throw invalid('client authentication failed');
    }
    return client;
  }

  async function tokenExchange(client: TestClient, form: URLSearchParams): Promise<Response> {
    const subjectToken = form.get('subject_token');
    if (!subjectToken) throw new OAuthProtocolError('invalid_request', 'subject_token is required');
    if (form.get('subject_token_type') !== TOKEN_TYPE.accessToken) {
      throw new OAuthProtocolError('invalid_request', 'subject_token_type must be an access token');
    }
    const subjectClaims = await check(subjectToken);
    if (!subjectClaims) throw new OAuthProtocolError('invalid_grant', 'the subject token is not active');
    const resource = form.get('resource') ?? undefined;
    const scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
    const outcome = onTokenExchange
      ? await onTokenExchange({
          clientId: client.clientId,
          subject: String(subjectClaims.sub),
          subjectToken,
          subjectClaims,
          resource,
          scopes,
        })
      : {};
    if (outcome.error !== undefined) {
      return new OAuthProtocolError(outcome.error, outcome.errorDescription, { status: outcome.status }).toResponse();
    }
    if (!resource) throw new OAuthProtocolError('invalid_target', 'resource is required');
    const expiresIn = outcome.expiresIn ?? 300;
    const accessToken =
      outcome.accessToken ??
      (await mintToken({
        subject: String(subjectClaims.sub),
        scopes,
        audience: resource,
        expiresIn,
        clientId: client.clientId,
        claims: { act: { sub: client.clientId } },
      }));
    return json({
      access_token: accessToken,
      issued_token_type: TOKEN_TYPE.accessToken,
      token_type: outcome.tokenType ?? 'Bearer',
      expires_in: expiresIn,
      ...((outcome.scope ?? scopes.join(' ')) ? { scope: outcome.scope ?? scopes.join(' ') } : {}),
    });
  }

  async function handle(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    requests[path] = (requests[path] ?? 0) + 1;
    if (unavailable) return new Response('unavailable', { status: 503 });
    try {
      if (path === '/.well-known/oauth-authorization-server' && request.method === 'GET') return json(metadata());
      if (path === '/jwks' && request.method === 'GET') return json({ keys: [key.publicJwk] });
      if (request.method !== 'POST') return new Response('not found', { status: 404 });
      const form = new URLSearchParams(await request.text());
      if (path === '/token') {
        const client = await authenticate(request, form);
        const grantType = form.get('grant_type');
        if (grantType !== TOKEN_EXCHANGE_GRANT_TYPE) {
          throw new OAuthProtocolError('unsupported_grant_type', `grant_type ${grantType} is not supported here`);
        }
        return await tokenExchange(client, form);
      }
      if (path === '/introspect') {
        await authenticate(request, form);
        const claims = await check(form.get('token') ?? '');
        return json(claims ? { ...claims, active: true, token_type: 'Bearer' } : { active: false });
      }
      if (path === '/revoke') {
        await authenticate(request, form);
        const token = form.get('token');
        if (token) revoked.add(token);
        return new Response(null, { status: 200 });
      }
      return new Response('not found', { status: 404 });
    } catch (error) {
      if (error instanceof OAuthProtocolError) return error.toResponse();
      return new OAuthProtocolError('server_error', String(error)).toResponse();
    }
  }

  function metadata(): AuthorizationServerMetadata {
    return {
      issuer,
      token_endpoint: endpoints().tokenEndpoint,
      jwks_uri: endpoints().jwksUri,
      introspection_endpoint: endpoints().introspectionEndpoint,
      revocation_endpoint: endpoints().revocationEndpoint,
      grant_types_supported: [TOKEN_EXCHANGE_GRANT_TYPE],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256', 'RS256', 'EdDSA'],
      code_challenge_methods_supported: ['S256'],
    };
  }

  const running: RunningServer = await listen(toNodeListener(handle), { port: options.port ?? 0 });
  issuer = running.url;

  return {
    issuer,
    ...endpoints(),
    get metadata() {
      return metadata();
    },
    requests,
    mintToken,
    revoke: (token) => {
      revoked.add(token);
    },
    rotateKeys: async () => {
      key = await newKey();
    },
    registerClient: (client) => {
      clients.set(client.clientId, client);
    },
    setTokenExchangeHandler: (handler) => {
      onTokenExchange = handler;
    },
    setUnavailable: (value) => {
      unavailable = value;
    },
    close: () => running.close(),
  };
}
