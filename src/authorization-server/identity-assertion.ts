import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JWK,
  type JWTPayload,
  errors as joseErrors,
  jwtVerify,
} from 'jose';
import type Provider from 'oidc-provider';
import { type Adapter, errors, type KoaContextWithOIDC } from 'oidc-provider';
import { GatehouseError } from '../oauth/errors.js';
import { ID_JAG_JWT_TYPE, JWT_BEARER_GRANT_TYPE } from '../oauth/jwt-bearer.js';
import { assertSecureUrl, canonicalResourceUri, canonicalResourceUriOrUndefined } from '../oauth/resource-uri.js';
import { invalidGrant } from './grant-errors.js';
import type { resourceServerInfo } from './token-formats.js';

/**
 * An enterprise identity provider whose identity assertion authorization grants (ID-JAG, RFC 7523 JWT-bearer; MCP's
 * enterprise-managed authorization, SEP-990) this authorization server accepts: the organisation's IdP decides
 * centrally which MCP servers a user's agent may use, and Gatehouse turns its grant into an audience-bound access
 * token, without a browser.
 *
 * Every grant is checked: `typ` `oauth-id-jag+jwt`, the IdP's signature, `iss`, `aud` (this server's issuer), `exp`
 * and `iat`, `jti` used once (across instances sharing a store), `client_id` equal to the authenticated client,
 * the resource (configured here, allowed for this IdP) and the scopes (within the grant's `scope` and the resource's).
 *
 * @example
 * ```ts
 * import type { EnterpriseIdentityProvider } from 'gatehouse/authorization-server';
 *
 * const acme: EnterpriseIdentityProvider = {
 *   issuer: 'https://idp.acme.example',
 *   jwksUri: 'https://idp.acme.example/.well-known/jwks.json',
 *   name: 'acme',                  // accounts are `acme:<sub>`
 *   clients: ['acme-agent'],       // confidential clients allowed the jwt-bearer grant
 *   resources: ['https://mcp.example.com/mcp'],
 * };
 * ```
 */
export interface EnterpriseIdentityProvider {
  /** The IdP's issuer identifier: the `iss` of the grants it signs. */
  issuer: string;
  /** Where the IdP publishes its signing keys (https, or http on loopback). Give this or `jwks`. */
  jwksUri?: string;
  /** The IdP's public signing keys, inline. */
  jwks?: { keys: JWK[] };
  /** Short name of the IdP in account identifiers (`<name>:<sub>`). Default: the issuer's host. */
  name?: string;
  /** Clients that may present this IdP's grants. Default: any authenticated client allowed the jwt-bearer grant. */
  clients?: string[];
  /** Resources this IdP may grant access to. Default: every configured resource. */
  resources?: string[];
  /**
   * How the grant's `sub` becomes an account here: `'namespaced'` (default) makes the account `<name>:<sub>`, so an
   * IdP can never speak for a local user; `'local'` requires an existing local account whose subject is `sub`.
   */
  accounts?: 'namespaced' | 'local';
  /** Accepted signing algorithms. Default RS256, PS256, ES256, EdDSA. */
  algorithms?: string[];
  /** The longest lifetime (`exp - iat`) accepted, in seconds. Default 600. */
  maxLifetimeSeconds?: number;
}

/** A bad {@link EnterpriseIdentityProvider} configuration. */
export class EnterpriseIdentityProviderConfigError extends GatehouseError {}

/** The store model that remembers each grant's `jti` until it expires (single use across instances). */
export const ID_JAG_REPLAY_MODEL = 'IdentityAssertion';

const CLOCK_TOLERANCE_SECONDS = 30;
const DEFAULT_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'];

interface TrustedIdp {
  issuer: string;
  name: string;
  keys: ReturnType<typeof createRemoteJWKSet> | ReturnType<typeof createLocalJWKSet>;
  clients: Set<string> | undefined;
  resources: Set<string> | undefined;
  accounts: 'namespaced' | 'local';
  algorithms: string[];
  maxLifetime: number;
}

function configError(message: string, hint: string): never {
  throw new EnterpriseIdentityProviderConfigError(message, { code: 'ERR_AS_CONFIG', hint });
}

function trusted(idp: EnterpriseIdentityProvider, isResource: (r: string) => boolean): TrustedIdp {
  let host: string;
  try {
    host = new URL(idp.issuer).host;
  } catch {
    return configError(`enterprise IdP issuer ${idp.issuer} is not a URL`, 'Give the IdP issuer as an https URL.');
  }
  if (!idp.jwksUri === !idp.jwks) {
    configError(
      `enterprise IdP ${idp.issuer} needs exactly one of jwksUri and jwks`,
      "Give the IdP's JWKS URL (jwksUri) or its public keys (jwks).",
    );
  }
  if (idp.jwksUri) {
    try {
      assertSecureUrl(idp.jwksUri, 'jwksUri');
    } catch {
      configError(`jwksUri ${idp.jwksUri} must be https (http only on loopback)`, 'Use the https JWKS URL of the IdP.');
    }
  }
  const resources = idp.resources?.map((r) => {
    if (!isResource(r)) {
      configError(
        `enterprise IdP ${idp.issuer} may grant ${r}, which is not a configured resource`,
        'Add it to resources (--resource URL=scope,…) or remove it from the IdP.',
      );
    }
    return canonicalResourceUri(r);
  });
  const name = idp.name ?? host;
  if (!/^[A-Za-z0-9._-]+$/.test(name)) {
    configError(`enterprise IdP name ${name} may hold only letters, digits, . _ -`, 'Give a short name, e.g. acme.');
  }
  return {
    issuer: idp.issuer,
    name,
    keys: idp.jwksUri
      ? createRemoteJWKSet(new URL(idp.jwksUri), { cacheMaxAge: 10 * 60_000, cooldownDuration: 30_000 })
      : createLocalJWKSet(idp.jwks!),
    clients: idp.clients ? new Set(idp.clients) : undefined,
    resources: resources ? new Set(resources) : undefined,
    accounts: idp.accounts ?? 'namespaced',
    algorithms: idp.algorithms ?? DEFAULT_ALGORITHMS,
    maxLifetime: idp.maxLifetimeSeconds ?? 600,
  };
}

/** Scopes as sent on the wire: space-separated (RFC 6749 §3.3). */
const wireScopes = (value: string): string[] => value.split(' ').filter(Boolean);

/** Why jose refused the grant, in words a client developer can act on (never the key material). */
function refusal(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'the identity assertion has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return "the identity assertion's aud is not this authorization server's issuer";
    if (error.claim === 'iat') return 'the identity assertion was issued too long ago or in the future';
    return `the identity assertion's ${error.claim} claim is invalid or missing`;
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return "the identity assertion's signature does not verify with the IdP's keys";
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "the identity assertion's algorithm is not accepted";
  if (error instanceof joseErrors.JWKSTimeout || error instanceof joseErrors.JOSEError) {
    return `the identity assertion could not be verified (${(error as Error).message})`;
  }
  return 'the identity assertion could not be verified';
}

/** The enterprise accounts' side of `findAccount`: `<name>:<sub>` of a namespaced IdP. */
export interface EnterpriseAccounts {
  /** Whether `subject` is an account of a trusted, namespaced IdP. */
  owns(subject: string): boolean;
}

/**
 * Registers the JWT-bearer grant for identity assertion authorization grants from `idps` on `provider`. Returns what
 * the account lookup needs to know of the accounts these grants create.
 */
export function installIdentityAssertionGrant(
  provider: Provider,
  options: {
    issuer: string;
    idps: EnterpriseIdentityProvider[];
    store: (model: string) => Adapter;
    /** The configured resource for an indicator, with its scopes. */
    resource: (indicator: string) => { scopes: string[] } | undefined;
    /** The resource-server settings of a configured resource (format, algorithm, lifetime). */
    resourceServer: (resource: string) => ReturnType<typeof resourceServerInfo> | undefined;
    /** Whether a local account with this subject exists and may sign in. */
    localAccount: (subject: string) => Promise<boolean>;
  },
): EnterpriseAccounts {
  const idps = new Map<string, TrustedIdp>();
  for (const idp of options.idps) {
    const entry = trusted(idp, (r) => options.resource(r) !== undefined);
    if (idps.has(entry.issuer)) configError(`enterprise IdP ${entry.issuer} is listed twice`, 'List each IdP once.');
    idps.set(entry.issuer, entry);
  }
  const namespaces = new Set([...idps.values()].filter((i) => i.accounts === 'namespaced').map((i) => `${i.name}:`));
  const replay = options.store(ID_JAG_REPLAY_MODEL);

  provider.registerGrantType(
    JWT_BEARER_GRANT_TYPE,
    async (ctx: KoaContextWithOIDC) => {
      const client = ctx.oidc.client!;
      const params = ctx.oidc.params as Record<string, unknown>;
      if (client.clientAuthMethod === 'none') {
        throw new errors.UnauthorizedClient('the jwt-bearer grant requires an authenticated (confidential) client');
      }
      const assertion = params['assertion'];
      if (typeof assertion !== 'string' || !assertion) throw new errors.InvalidRequest('missing assertion');

      let header: { typ?: string };
      let unverified: JWTPayload;
      try {
        header = decodeProtectedHeader(assertion);
        unverified = decodeJwt(assertion);
      } catch {
        throw invalidGrant('the assertion is not a JWT');
      }
      const typ = header.typ?.toLowerCase().replace(/^application\//, '');
      if (typ !== ID_JAG_JWT_TYPE) {
        throw invalidGrant(`the assertion must be an identity assertion grant (typ ${ID_JAG_JWT_TYPE})`);
      }
      const idp = typeof unverified.iss === 'string' ? idps.get(unverified.iss) : undefined;
      if (!idp) throw invalidGrant('the identity assertion comes from an issuer this server does not trust');

      let claims: JWTPayload;
      try {
        ({ payload: claims } = await jwtVerify(assertion, idp.keys, {
          issuer: idp.issuer,
          audience: options.issuer,
          algorithms: idp.algorithms,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          maxTokenAge: idp.maxLifetime + CLOCK_TOLERANCE_SECONDS,
          requiredClaims: ['sub', 'jti', 'exp', 'iat', 'client_id'],
        }));
      } catch (error) {
        throw invalidGrant(refusal(error));
      }
      const now = Math.floor(Date.now() / 1000);
      if (claims.exp! - claims.iat! > idp.maxLifetime) {
        throw invalidGrant(`the identity assertion lives longer than ${idp.maxLifetime} s`);
      }
      if (claims['client_id'] !== client.clientId) {
        throw invalidGrant('the identity assertion was issued to another client');
      }
      if (idp.clients && !idp.clients.has(client.clientId)) {
        throw new errors.UnauthorizedClient("this client may not present this IdP's identity assertions");
      }

      // The resource: the grant's, and the request's if both are given (they must agree).
      const claimed = claims['resource'];
      if (claimed !== undefined && typeof claimed !== 'string') {
        throw invalidGrant('the identity assertion must name exactly one resource');
      }
      const requested = params['resource'];
      if (Array.isArray(requested)) throw new errors.InvalidTarget('exactly one resource is supported');
      const target = (typeof requested === 'string' ? requested : undefined) ?? claimed;
      if (!target) throw new errors.InvalidTarget('the resource parameter is required');
      const resource = canonicalResourceUriOrUndefined(target);
      if (!resource) throw new errors.InvalidTarget(`${target} is not a valid resource URI`);
      if (claimed !== undefined && canonicalResourceUriOrUndefined(claimed) !== resource) {
        throw new errors.InvalidTarget('the requested resource is not the one the identity assertion grants');
      }
      const config = options.resource(resource);
      const info = options.resourceServer(resource);
      if (!config || !info) throw new errors.InvalidTarget(`unknown resource ${target}`);
      if (idp.resources && !idp.resources.has(resource)) {
        throw new errors.InvalidTarget('this IdP may not grant access to this resource');
      }

      // Scopes: what was asked (default: what the grant names, else all the resource's), within both bounds.
      const granted = typeof claims['scope'] === 'string' ? new Set(wireScopes(claims['scope'])) : undefined;
      const asked = typeof params['scope'] === 'string' && params['scope'] ? wireScopes(params['scope']) : undefined;
      const scopes = asked ?? (granted ? [...granted] : config.scopes);
      const beyondGrant = granted ? scopes.filter((s) => !granted.has(s)) : [];
      if (beyondGrant.length) {
        throw new errors.InvalidScope('the identity assertion does not grant these scopes', beyondGrant.join(' '));
      }
      const unknown = scopes.filter((s) => !config.scopes.includes(s));
      if (unknown.length) throw new errors.InvalidScope('the resource has no such scopes', unknown.join(' '));

      const subject = String(claims.sub);
      let accountId: string;
      if (idp.accounts === 'local') {
        if (!(await options.localAccount(subject))) {
          throw invalidGrant('the identity assertion names no local account');
        }
        accountId = subject;
      } else {
        accountId = `${idp.name}:${subject}`;
      }

      // Single use, across every instance on the store: the adapters' consume() is a compare-and-set and an
      // upsert keeps an existing mark, so of two requests with one jti exactly one passes.
      const replayId = `${idp.issuer}#${String(claims.jti)}`;
      const keepFor = Math.max(1, claims.exp! + CLOCK_TOLERANCE_SECONDS - now);
      await replay.upsert(replayId, { iss: idp.issuer }, keepFor);
      try {
        await replay.consume(replayId);
      } catch (error) {
        if (error instanceof errors.InvalidGrant) {
          throw invalidGrant('the identity assertion was already used (jti replay)');
        }
        throw error;
      }

      const token = new provider.AccessToken({
        accountId,
        client,
        scope: scopes.join(' '),
        gty: JWT_BEARER_GRANT_TYPE,
      } as never);
      token.resourceServer = new provider.ResourceServer(resource, info);
      ctx.oidc.entity('AccessToken', token);
      const value = await token.save();
      ctx.set('cache-control', 'no-store');
      ctx.body = {
        access_token: value,
        token_type: token.tokenType,
        expires_in: token.expiration,
        scope: scopes.join(' '),
      };
    },
    ['assertion', 'resource', 'scope'],
    ['resource'],
  );

  return { owns: (subject) => [...namespaces].some((prefix) => subject.startsWith(prefix)) };
}
