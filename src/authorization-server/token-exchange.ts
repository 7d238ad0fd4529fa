import { createLocalJWKSet, decodeProtectedHeader, type JWK, jwtVerify } from 'jose';
import type Provider from 'oidc-provider';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { canonicalResourceUri, canonicalResourceUriOrUndefined } from '../oauth/resource-uri.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../oauth/token-exchange.js';
import { invalidGrant } from './grant-errors.js';
import { jwtRecordId, publicJwks, type resourceServerInfo } from './token-formats.js';
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
  /**
   * Downstream resources, each with the scopes the client may ask for. The issued scopes are also limited to those
   * the user consented to (the subject token's scopes), unless `beyondConsent` is `true` for that resource.
   */
  to: Array<{ resource: string; scopes: string[]; beyondConsent?: boolean }>;
}

/** The `act` claim of each exchanged token, read by `extraTokenClaims` as the token is issued. */
const actors = new WeakMap<object, Record<string, unknown>>();

/** `extraTokenClaims`: the `act` (actor) claim of a token issued by token exchange. */
export function tokenExchangeClaims(token: object): Record<string, unknown> | undefined {
  const act = actors.get(token);
  return act ? { act } : undefined;
}

interface SubjectToken {
  accountId: string;
  /** Every scope the user consented to in the subject token's grant (all its resources), and the token's own. */
  consented: Set<string>;
  grantId?: string;
  aud?: string | string[];
  scope?: string;
  exp?: number;
  extra?: unknown;
}

/**
 * The access token a subject token stands for, JWT or opaque, still valid and not revoked, whose grant is still
 * active and whose account can still sign in. Anything else is `invalid_grant`.
 */
async function findSubjectToken(
  ctx: KoaContextWithOIDC,
  value: string,
  options: { issuer: string; signingKeys: () => JWK[]; accountActive: (subject: string) => Promise<boolean> },
): Promise<SubjectToken> {
  const { provider } = ctx.oidc;
  let id = value;
  let isJwt = false;
  try {
    isJwt = !!decodeProtectedHeader(value);
  } catch {
    isJwt = false;
  }
  if (isJwt) {
    try {
      const keys = createLocalJWKSet({ keys: publicJwks(options.signingKeys()) });
      const { payload } = await jwtVerify(value, keys, { issuer: options.issuer, typ: 'at+jwt' });
      id = jwtRecordId(String(payload.jti));
    } catch {
      throw invalidGrant('subject_token is invalid or expired');
    }
  }
  const token = (await provider.AccessToken.find(id)) as unknown as Omit<SubjectToken, 'consented'> | undefined;
  if (!token) throw invalidGrant('subject_token is invalid, expired or revoked');
  if (typeof token.accountId !== 'string') throw invalidGrant('subject_token has no subject');
  const consented = new Set((token.scope ?? '').split(' ').filter(Boolean));
  if (token.grantId) {
    const grant = await provider.Grant.find(token.grantId);
    if (!grant) throw invalidGrant('the grant of subject_token was revoked');
    const granted = grant as unknown as { resources?: Record<string, string>; openid?: { scope?: string } };
    for (const scopes of [...Object.values(granted.resources ?? {}), granted.openid?.scope ?? '']) {
      for (const scope of scopes.split(' ')) if (scope) consented.add(scope);
    }
  }
  if (!(await options.accountActive(token.accountId)))
    throw invalidGrant('the account of subject_token is disabled or gone');
  return { ...token, consented };
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
    /** Whether the subject's account still exists and may sign in. */
    accountActive: (subject: string) => Promise<boolean>;
    /** The resource-server settings of a configured resource (format, algorithm, lifetime). */
    resourceServer: (resource: string) => ReturnType<typeof resourceServerInfo> | undefined;
    /** Resources mapped to an upstream are answered with the user's upstream token. */
    upstream?: UpstreamIdentity;
  },
): void {
  const policies = options.policies.map((p) => ({
    clientId: p.clientId,
    from: new Set(p.from.map((r) => canonicalResourceUri(r))),
    to: new Map(p.to.map((t) => [canonicalResourceUri(t.resource), new Set(t.scopes)])),
    beyondConsent: new Set(p.to.filter((t) => t.beyondConsent === true).map((t) => canonicalResourceUri(t.resource))),
  }));

  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT_TYPE,
    async (ctx: KoaContextWithOIDC) => {
      const client = ctx.oidc.client!;
      const { provider } = ctx.oidc;
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

      const subject = await findSubjectToken(ctx, subjectToken, options);
      const audiences = (Array.isArray(subject.aud) ? subject.aud : [subject.aud ?? '']).map((a) =>
        canonicalResourceUriOrUndefined(a),
      );

      const target = single(params['resource'], 'resource') ?? single(params['audience'], 'audience');
      if (!target) throw new errors.InvalidTarget('resource is required');
      const resource = canonicalResourceUriOrUndefined(target);
      const rule = rules.find((r) => audiences.some((a) => a !== undefined && r.from.has(a)));
      if (!rule) throw invalidGrant('subject_token was not issued for a resource this client serves');
      const allowedScopes = resource === undefined ? undefined : rule.to.get(resource);
      if (!resource || !allowedScopes)
        throw new errors.InvalidTarget('the policy does not allow exchanging toward this resource');

      // Our own resources: only scopes the user consented to in the subject token's grant, unless the policy says
      // otherwise. (An upstream resource's scopes are the user's consent at the upstream, checked there.)
      const upstreamResource = options.upstream?.upstreamForResource(resource) !== undefined;
      const consentBound = !upstreamResource && !rule.beyondConsent.has(resource);
      const asked = typeof params['scope'] === 'string' && params['scope'] ? params['scope'].split(' ') : undefined;
      const requested = asked ?? [...allowedScopes].filter((s) => !consentBound || subject.consented.has(s));
      const refused = requested.filter((s) => !allowedScopes.has(s));
      if (refused.length) throw new errors.InvalidScope('the policy does not allow these scopes', refused.join(' '));
      if (consentBound && requested.length === 0 && allowedScopes.size > 0) {
        throw new errors.InvalidScope(
          'the user consented to none of the scopes the policy allows',
          [...allowedScopes].join(' '),
        );
      }
      const unconsented = consentBound ? requested.filter((s) => !subject.consented.has(s)) : [];
      if (unconsented.length) {
        throw new errors.InvalidScope('the user did not consent to these scopes', unconsented.join(' '));
      }

      // A resource served by an upstream (e.g. https://api.github.com → github): the user's own upstream token,
      // refreshed if needed. Failures (not linked, revoked, missing scope) are OAuth errors naming the link URL.
      if (options.upstream && upstreamResource) {
        try {
          ctx.body = await options.upstream.exchangeForUpstreamResource({
            subject: subject.accountId,
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

      const info = options.resourceServer(resource);
      if (!info) throw new errors.InvalidTarget('the policy does not allow exchanging toward this resource');
      const token = new provider.AccessToken({
        accountId: subject.accountId,
        client,
        scope: requested.join(' '),
        gty: TOKEN_EXCHANGE_GRANT_TYPE,
      } as never);
      token.resourceServer = new provider.ResourceServer(resource, info);
      const now = Math.floor(Date.now() / 1000);
      // The exchanged token never outlives the user's token it was derived from.
      (token as unknown as { expiresIn: number }).expiresIn = Math.max(
        1,
        Math.min(info.accessTokenTTL, (subject.exp ?? now + info.accessTokenTTL) - now),
      );
      const actor: Record<string, unknown> = { sub: client.clientId, client_id: client.clientId };
      const previousActor = (subject.extra as Record<string, unknown> | undefined)?.['act'];
      if (previousActor) actor['act'] = previousActor;
      actors.set(token, actor);
      ctx.oidc.entity('AccessToken', token);
      const value = await token.save();
      ctx.body = {
        access_token: value,
        issued_token_type: TOKEN_TYPE.accessToken,
        token_type: token.tokenType,
        expires_in: token.expiration,
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
