import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLocalJWKSet, decodeProtectedHeader, type JWK, jwtVerify } from 'jose';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { SigningAlgorithm } from './keys.js';
import { readBody, replay } from './request-body.js';

/**
 * How a resource's access tokens look: `jwt` (RFC 9068, verifiable offline with the JWKS) or `opaque` (a random
 * handle only introspection can read). Both can be introspected and revoked.
 */
export type AccessTokenFormat = 'jwt' | 'opaque';

/** What oidc-provider needs to know about one resource server. */
export interface ResourceServerSettings {
  audience: string;
  scope: string;
  accessTokenTtl?: number;
  format?: AccessTokenFormat;
  signingAlg?: SigningAlgorithm;
}

/** The `getResourceServerInfo` answer for a resource: format, signing algorithm (RS256 unless told) and lifetime. */
export function resourceServerInfo(settings: ResourceServerSettings) {
  const format = settings.format ?? 'jwt';
  return {
    scope: settings.scope,
    audience: settings.audience,
    accessTokenTTL: settings.accessTokenTtl ?? 3600,
    accessTokenFormat: format,
    ...(format === 'jwt' ? { jwt: { sign: { alg: settings.signingAlg ?? 'RS256' } } } : {}),
  };
}

/*
 * oidc-provider keeps no record of a JWT access token and refuses to introspect or revoke one. Gatehouse keeps a
 * record of each (the "shadow", in the opaque token's own model, so grant revocation and expiry apply to it as to
 * any opaque token) under `jwt:<jti>`, and in front of the introspection and revocation endpoints replaces a JWT
 * this server signed by the id of its record. A record id is never a token: presented directly it is refused.
 */
const SHADOW_PREFIX = 'jwt:';
const THROUGH_FRONT = Symbol('gatehouse.structuredTokenFront');
/** The record id a JWT whose signature does not verify is replaced by: no record has it, so it is inactive. */
const NO_RECORD = `${SHADOW_PREFIX}-`;

interface TokenLike {
  jti: string;
  kind: string;
  adapter: { upsert(id: string, payload: unknown, ttl: number): Promise<void> };
  constructor: unknown;
}

/**
 * `formats.customizers.jwt`: records every JWT access token oidc-provider issues, before it is handed out, so
 * that introspection knows it at once.
 */
export async function recordJwtAccessToken(
  _ctx: unknown,
  token: unknown,
  structured: { payload: Record<string, unknown> },
): Promise<void> {
  const t = token as TokenLike & Record<string, unknown>;
  const fields = (t.constructor as { IN_PAYLOAD: string[] }).IN_PAYLOAD;
  const record: Record<string, unknown> = {};
  for (const key of fields) if (t[key] !== undefined) record[key] = t[key];
  const iat = structured.payload['iat'] as number;
  const exp = structured.payload['exp'] as number;
  Object.assign(record, { iat, exp, jti: `${SHADOW_PREFIX}${t.jti}`, kind: t.kind });
  await t.adapter.upsert(`${SHADOW_PREFIX}${t.jti}`, record, Math.max(1, exp - Math.floor(Date.now() / 1000)));
}

/** The id of the record of a JWT access token with this `jti` (what `AccessToken.find` takes). */
export function jwtRecordId(jti: string): string {
  return `${SHADOW_PREFIX}${jti}`;
}

/**
 * For `allowedPolicy` of introspection and revocation: a record of a JWT is reachable only through the JWT itself
 * (via {@link structuredTokenFront}), never by presenting the record id.
 */
export function reachedLegitimately(ctx: KoaContextWithOIDC, token: { jti?: string }): boolean {
  if (!token.jti?.startsWith(SHADOW_PREFIX)) return true;
  return (ctx.req as unknown as Record<symbol, unknown>)[THROUGH_FRONT] === true;
}

const PRIVATE_MEMBERS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']);

/** The public parts of private JWKs (EC or RSA), to verify with. */
export function publicJwks(keys: JWK[]): JWK[] {
  return keys.map((key) => Object.fromEntries(Object.entries(key).filter(([name]) => !PRIVATE_MEMBERS.has(name))));
}

/**
 * Wraps oidc-provider's listener: a `POST` to the introspection or revocation endpoint whose `token` is a JWT is
 * passed on with the JWT replaced by the id of its record — when this server signed it — or by an id no record has
 * (so it is inactive, and revoking it does nothing, as RFC 7009 wants). Client authentication, the policies and the
 * answer stay oidc-provider's.
 */
export function structuredTokenFront(options: {
  issuer: string;
  signingKeys: () => JWK[];
  paths: string[];
  next: (req: IncomingMessage, res: ServerResponse) => void;
}): (req: IncomingMessage, res: ServerResponse, pathname: string) => boolean {
  const paths = new Set(options.paths);
  return (req, res, pathname) => {
    if (req.method !== 'POST' || !paths.has(pathname)) return false;
    if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) return false;
    rewrite(req).then(
      (forward) => options.next(forward, res),
      () => {
        if (!res.headersSent) res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_request', error_description: 'failed to parse the request body' }));
      },
    );
    return true;
  };

  async function rewrite(req: IncomingMessage): Promise<IncomingMessage> {
    const body = await readBody(req);
    if (!body) throw new RangeError('request entity too large');
    const params = new URLSearchParams(body.toString('utf8'));
    const token = params.get('token');
    let isJwt = false;
    try {
      isJwt = token !== null && params.getAll('token').length === 1 && !!decodeProtectedHeader(token);
    } catch {
      isJwt = false;
    }
    if (!isJwt) return replay(req, body);
    let recordId = NO_RECORD;
    try {
      const keys = createLocalJWKSet({ keys: publicJwks(options.signingKeys()) });
      const { payload } = await jwtVerify(token!, keys, { issuer: options.issuer, typ: 'at+jwt' });
      if (typeof payload.jti === 'string') recordId = jwtRecordId(payload.jti);
    } catch {
      recordId = NO_RECORD; // not ours, tampered with, or expired: inactive
    }
    params.set('token', recordId);
    const forward = replay(req, Buffer.from(params.toString()));
    (forward as unknown as Record<symbol, unknown>)[THROUGH_FRONT] = true;
    return forward;
  }
}
