import { randomBytes } from 'node:crypto';
import { createLocalJWKSet, importJWK, type JWK, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import type Provider from 'oidc-provider';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { canonicalResourceUri } from '../oauth/resource-uri.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../oauth/token-exchange.js';
import type { UpstreamIdentity } from './upstream/engine.js';
import { UpstreamError } from './upstream/errors.js';

/**
 * Who may exchange what (RFC 8693). A confidential client — typically an MCP server — that received a user's
 * access token (whose `aud` is one of `from`) may exchange it for a token bound to one of the `to` resources,
 * with at most the scopes listed there. The issued token keeps the user as `sub` and names the client in `act`.
 *
 * @example
 * ```ts
 * const policy: TokenExchangePolicy = {
 *   clientId: 'mcp-server',
 *   from: ['https://mcp.example.com/mcp'],
 *   to: [{ resource: 'https://api.example.com', scopes: ['calendar:read'] }],
 * };
 * ```
 */
export interface TokenExchangePolicy {
  /** The client allowed to exchange. It must authenticate (a public client never may). */
  clientId: string;
  /** Audiences the subject token may carry: the resources this client serves. */
  from: string[];
  /** Downstream resources, each with the scopes the client may ask for. */
  to: Array<{ resource: string; scopes: string[] }>;
}

function canonical(value: string): string | undefined {
  try {
    return canonicalResourceUri(value);
  } catch {
    return undefined;
  }
}

function single(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    if (value.length !== 1) throw new errors.InvalidTarget(`exactly one ${name} is supported`);
    return String(value[0]);
  }
  return String(value);
}

/** Registers the token-exchange grant on `provider`, enforcing `policies`. */
export function installTokenExchange(
  provider: Provider,
  options: {
    issuer: string;
    policies: TokenExchangePolicy[];
    signingKeys: () => JWK[];
    resourceTtl: (resource: string) => number | undefined;
    /** Resources mapped to an upstream are answered with the user's upstream token. */
    upstream?: UpstreamIdentity;
  },
): void {
  const policies = options.policies.map((p) => ({
    clientId: p.clientId,
    from: new Set(p.from.map((r) => canonicalResourceUri(r))),
    to: new Map(p.to.map((t) => [canonicalResourceUri(t.resource), new Set(t.scopes)])),
  }));

  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT_TYPE,
    async (ctx: KoaContextWithOIDC) => {
      const client = ctx.oidc.client!;
      const params = ctx.oidc.params as Record<string, unknown>;
      if (client.clientAuthMethod === 'none') {
        throw new errors.UnauthorizedClient('token exchange requires an authenticated (confidential) client');
      }
      const rules = policies.filter((p) => p.clientId === client.clientId);
      if (rules.length === 0) throw new errors.UnauthorizedClient('this client may not exchange tokens');

      const subjectToken = params['subject_token'];
      const subjectTokenType = params['subject_token_type'];
      if (typeof subjectToken !== 'string' || !subjectToken) throw new errors.InvalidRequest('missing subject_token');
      if (subjectTokenType !== TOKEN_TYPE.accessToken && subjectTokenType !== TOKEN_TYPE.jwt) {
        throw new errors.InvalidRequest(`subject_token_type must be ${TOKEN_TYPE.accessToken}`);
      }
      if (params['actor_token'] !== undefined) throw new errors.InvalidRequest('actor_token is not supported');
      const requestedType = params['requested_token_type'];
      if (requestedType !== undefined && requestedType !== TOKEN_TYPE.accessToken) {
        throw new errors.InvalidRequest(`requested_token_type must be ${TOKEN_TYPE.accessToken}`);
      }

      const keys = options.signingKeys();
      let subject: JWTPayload;
      try {
        const publicKeys = keys.map(({ d: _d, ...pub }) => pub);
        ({ payload: subject } = await jwtVerify(subjectToken, createLocalJWKSet({ keys: publicKeys }), {
          issuer: options.issuer,
          typ: 'at+jwt',
        }));
      } catch {
        throw new errors.InvalidGrant('subject_token is invalid or expired');
      }
      if (typeof subject.sub !== 'string') throw new errors.InvalidGrant('subject_token has no subject');
      const audiences = (Array.isArray(subject.aud) ? subject.aud : [subject.aud ?? '']).map(canonical);

      const target = single(params['resource'], 'resource') ?? single(params['audience'], 'audience');
      if (!target) throw new errors.InvalidTarget('resource is required');
      const resource = canonical(target);
      const rule = rules.find((r) => audiences.some((a) => a !== undefined && r.from.has(a)));
      if (!rule) throw new errors.InvalidGrant('subject_token was not issued for a resource this client serves');
      const allowedScopes = resource === undefined ? undefined : rule.to.get(resource);
      if (!resource || !allowedScopes)
        throw new errors.InvalidTarget('the policy does not allow exchanging toward this resource');

      const requested =
        typeof params['scope'] === 'string' && params['scope'] ? params['scope'].split(' ') : [...allowedScopes];
      const refused = requested.filter((s) => !allowedScopes.has(s));
      if (refused.length) throw new errors.InvalidScope('the policy does not allow these scopes', refused.join(' '));

      // A resource served by an upstream (e.g. https://api.github.com → github): the user's own upstream token,
      // refreshed if needed. Failures (not linked, revoked, missing scope) are OAuth errors naming the link URL.
      if (options.upstream?.upstreamForResource(resource)) {
        try {
          ctx.body = await options.upstream.exchangeForUpstreamResource({
            subject: subject.sub,
            resource,
            scopes: requested,
          });
          ctx.set('cache-control', 'no-store');
          return;
        } catch (error) {
          if (!(error instanceof UpstreamError)) throw error;
          const e = new errors.CustomOIDCProviderError(error.error, error.description);
          if (error.status !== 400) Object.assign(e, { status: error.status, statusCode: error.status });
          throw e;
        }
      }

      const signing = keys[0]!;
      const ttl = options.resourceTtl(resource) ?? 3600;
      const actor: Record<string, unknown> = { sub: client.clientId, client_id: client.clientId };
      if (subject['act']) actor['act'] = subject['act'];
      const now = Math.floor(Date.now() / 1000);
      // The exchanged token never outlives the user's token it was derived from.
      const exp = Math.min(now + ttl, typeof subject.exp === 'number' ? subject.exp : now + ttl);
      const accessToken = await new SignJWT({
        client_id: client.clientId,
        scope: requested.join(' '),
        act: actor,
      })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: signing.kid! })
        .setIssuer(options.issuer)
        .setSubject(subject.sub)
        .setAudience(resource)
        .setIssuedAt(now)
        .setExpirationTime(exp)
        .setJti(randomBytes(16).toString('base64url'))
        .sign(await importJWK(signing, 'ES256'));

      ctx.body = {
        access_token: accessToken,
        issued_token_type: TOKEN_TYPE.accessToken,
        token_type: 'Bearer',
        expires_in: exp - now,
        scope: requested.join(' '),
      };
    },
    [
      'subject_token',
      'subject_token_type',
      'actor_token',
      'actor_token_type',
      'requested_token_type',
      'audience',
      'resource',
      'scope',
    ],
    ['resource', 'audience'],
  );
}
