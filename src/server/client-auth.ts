import { randomUUID } from 'node:crypto';
import { importJWK, type JWK, SignJWT } from 'jose';

/**
 * This server's own credentials at the authorization server, used for introspection and token exchange.
 * Secrets are sent with `client_secret_basic` unless `method` says `client_secret_post`; a private key means
 * `private_key_jwt` (RFC 7523), which keeps the secret off the wire.
 *
 * @example
 * ```ts
 * import type { ClientCredentials } from 'gatehouse/server';
 *
 * const basic: ClientCredentials = { clientId: 'mcp-server', clientSecret: process.env.MCP_CLIENT_SECRET! };
 * const post: ClientCredentials = { clientId: 'mcp-server', clientSecret: '…', method: 'client_secret_post' };
 * const jwt: ClientCredentials = { clientId: 'mcp-server', privateKey: myPrivateJwk, algorithm: 'ES256' };
 * ```
 */
export type ClientCredentials =
  | { clientId: string; clientSecret: string; method?: 'client_secret_basic' | 'client_secret_post' }
  | {
      clientId: string;
      /** A private JWK (with `d`) or a `CryptoKey`. */
      privateKey: JWK | CryptoKey;
      /** The JWS algorithm. Default: the JWK's `alg`, else ES256. */
      algorithm?: string;
      /** `kid` to put in the assertion header. Default: the JWK's `kid`. */
      keyId?: string;
      method?: 'private_key_jwt';
    };

/**
 * The `token_endpoint_auth_method` a set of credentials uses.
 *
 * @example
 * ```ts
 * import { clientAuthMethod } from 'gatehouse/server';
 *
 * clientAuthMethod({ clientId: 'a', clientSecret: 'b' }); // 'client_secret_basic'
 * ```
 */
export function clientAuthMethod(credentials: ClientCredentials): string {
  if ('privateKey' in credentials) return 'private_key_jwt';
  return credentials.method ?? 'client_secret_basic';
}

const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** RFC 6749 §2.3.1: the id and secret are form-encoded before they are joined and base64-encoded. */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

/**
 * Adds client authentication to a request to an authorization-server endpoint (token, introspection).
 * `audience` is the `aud` of a `private_key_jwt` assertion: the issuer, which RFC 7523bis recommends and
 * every current AS accepts.
 */
export async function authenticateClient(
  credentials: ClientCredentials,
  body: URLSearchParams,
  headers: Headers,
  audience: string,
): Promise<void> {
  if ('privateKey' in credentials) {
    const jwk = credentials.privateKey instanceof CryptoKey ? undefined : credentials.privateKey;
    const alg = credentials.algorithm ?? jwk?.alg ?? 'ES256';
    const key = jwk ? await importJWK(jwk, alg) : (credentials.privateKey as CryptoKey);
    const kid = credentials.keyId ?? jwk?.kid;
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
      .setIssuer(credentials.clientId)
      .setSubject(credentials.clientId)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .setJti(randomUUID())
      .sign(key);
    body.set('client_id', credentials.clientId);
    body.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
    body.set('client_assertion', assertion);
    return;
  }
  if (credentials.method === 'client_secret_post') {
    body.set('client_id', credentials.clientId);
    body.set('client_secret', credentials.clientSecret);
    return;
  }
  const basic = Buffer.from(`${formEncode(credentials.clientId)}:${formEncode(credentials.clientSecret)}`).toString(
    'base64',
  );
  headers.set('authorization', `Basic ${basic}`);
}
