import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JWK } from 'jose';
import Provider, { type Adapter, type ClientMetadata, type Configuration, errors as oidcErrors } from 'oidc-provider';
import type { Logger } from 'pino';
import { GatehouseError } from '../oauth/errors.js';
import { assertSecureUrl, canonicalResourceUri, canonicalResourceUriOrUndefined } from '../oauth/resource-uri.js';
import { memoryOidcAdapter } from '../storage/oidc/memory.js';
import {
  ACR,
  authenticationClaims,
  STEP_UP_PARAMS,
  stepUpPolicy,
  upstreamAcr,
  withStepUpParams,
} from './authentication-context.js';
import { answerStoreOutage, installRetryAfter, isStoreOutage, withStoreAvailability } from './availability.js';
import { type ClientIdMetadataDocumentOptions, cimdFetch, publicTarget } from './cimd.js';
import {
  type DescribeResource,
  type DeviceFlowOptions,
  deviceFlowFeature,
  installDeviceCodeLink,
  installDevicePolling,
  userCodeGuard,
} from './device-flow.js';
import { healthEndpoints } from './health.js';
import { escapeHtml, PAGE_HEADERS, page } from './html.js';
import {
  type EnterpriseAccounts,
  type EnterpriseIdentityProvider,
  installIdentityAssertionGrant,
} from './identity-assertion.js';
import { CONSENT_MODEL, consentKey, createInteractionHandler } from './interactions.js';
import { issuerOrigin } from './issuer-origin.js';
import { fixedKeyRing, type KeyRing, openKeyRing } from './key-ring.js';
import {
  formTokenSecrets,
  KEYS_ID,
  KEYS_MODEL,
  type KeySet,
  longestTokenLifetime,
  type SigningAlgorithm,
} from './keys.js';
import type { Branding } from './pages.js';
import { mergeProviderConfiguration } from './provider-configuration.js';
import { applyProviderKeys } from './provider-keys.js';
import { createLoginLimiter, createUserCodeLimiter, type LoginRateLimit, type TrustProxy } from './rate-limit.js';
import { looksNative, redirectMatches, redirectUriProblem } from './redirects.js';
import { installRefreshGrace, withRefreshGrace } from './refresh-grace.js';
import { withFormBody, withJsonBody } from './request-body.js';
import { installTokenExchange, type TokenExchangePolicy, tokenExchangeClaims } from './token-exchange.js';
import {
  type AccessTokenFormat,
  reachedLegitimately,
  recordJwtAccessToken,
  resourceServerInfo,
  structuredTokenFront,
} from './token-formats.js';
import type { UpstreamIdentity } from './upstream/engine.js';
import { UpstreamConfigError } from './upstream/errors.js';
import type { Authenticator } from './users.js';

/** A resource server (MCP server) this authorization server issues tokens for. */
export interface ResourceConfig {
  /** The resource's canonical URL; it becomes the `aud` of its access tokens. */
  resource: string;
  /** Its display name on the consent page, e.g. "Acme files". Default: the URL. */
  name?: string;
  /**
   * Scopes a client may request for it: names, or `{ name, description }` to tell the user on the consent page
   * what the scope allows (e.g. `{ name: 'mcp:tools', description: 'Use your files tools' }`).
   */
  scopes?: Array<string | ScopeConfig>;
  /** Access-token lifetime in seconds, for every grant (code, refresh, client credentials, exchange). Default 3600. */
  accessTokenTtl?: number;
  /**
   * `jwt` (RFC 9068, default): resource servers verify tokens offline with the JWKS (`jwtVerifier`). `opaque`: a
   * random handle they must introspect (`introspectionVerifier`). Tokens of both formats can be introspected and
   * revoked.
   */
  accessTokenFormat?: AccessTokenFormat;
  /** The algorithm JWT access tokens are signed with: `RS256` (default; every verifier accepts it) or `ES256`. */
  signingAlg?: SigningAlgorithm;
  /** Issue only DPoP-bound (RFC 9449) access tokens for it: a token request without a DPoP proof is refused. */
  requireDpop?: boolean;
  /**
   * Scopes granted when an authorization request names this resource but no scope (MCP clients omit `scope` when
   * the resource advertises none). Default: all of `scopes`.
   */
  defaultScopes?: string[];
}

/** A scope with the sentence the consent page shows for it. */
export interface ScopeConfig {
  name: string;
  description?: string;
}

const scopeName = (scope: string | ScopeConfig): string => (typeof scope === 'string' ? scope : scope.name);

/** An oidc-provider storage adapter: a function from model name to {@link Adapter} (e.g. from `gatehouse/storage`). */
export type AdapterFactory = (model: string) => Adapter;

/** Options of {@link createAuthorizationServer}. Security defaults (PKCE S256, exact redirects) are not options. */
export interface AuthorizationServerOptions {
  /** The issuer identifier: the public base URL of this server, e.g. `https://auth.example.com`. */
  issuer: string;
  /** Checks user credentials on the login page. */
  authenticator: Authenticator;
  /** The resources tokens may be issued for. A request naming any other resource gets `invalid_target`. */
  resources: ResourceConfig[];
  /** Pre-registered clients, in RFC 7591 client metadata form. */
  clients?: readonly ClientMetadata[];
  /**
   * Where grants, tokens, clients, sessions and keys live. Default: this process's memory. Use
   * `oidcAdapterFactory()` from `gatehouse/storage` for SQLite, Redis or PostgreSQL; instances sharing one store
   * behave as one server.
   */
  adapter?: AdapterFactory;
  /**
   * Signing and cookie keys, used as given. Default: read from the store (generated there on first start) and read
   * again every `keyRefreshSeconds`, so a rotation (`gatehouse admin keys rotate`, `rotateKeys()`) reaches every
   * instance without a restart: new keys are published at once and sign from their activation time.
   */
  keys?: KeySet;
  /** Seconds between reads of the stored keys. Default 5. */
  keyRefreshSeconds?: number;
  /**
   * Rotate the stored keys this often, in seconds (one instance per period does it); the new keys sign
   * `keyActivationSeconds` after they are published. Default: never (rotate with `gatehouse admin keys rotate`).
   *
   * @example
   * ```ts
   * const rotation = { keyRotationSeconds: 30 * 24 * 3600, keyActivationSeconds: 900 };
   * ```
   */
  keyRotationSeconds?: number;
  /** Seconds between a scheduled rotation and the moment its keys sign. Default 900 (`DEFAULT_ACTIVATION_SECONDS`). */
  keyActivationSeconds?: number;
  /**
   * Seconds after a refresh-token rotation during which presenting the old token again returns the same new pair
   * (a retried request, two tabs) instead of revoking the grant. Default 5; 0 turns the grace window off.
   */
  refreshTokenGraceSeconds?: number;
  /** Which clients may exchange user tokens (RFC 8693) toward which resources. Default: none may. */
  tokenExchange?: TokenExchangePolicy[];
  /**
   * Enterprise IdPs whose identity assertion grants (ID-JAG, SEP-990) are accepted at the token endpoint through the
   * JWT-bearer grant; a client presenting them needs `urn:ietf:params:oauth:grant-type:jwt-bearer` in its
   * `grant_types` and must authenticate.
   */
  enterpriseIdps?: EnterpriseIdentityProvider[];
  /** Dynamic client registration. Default enabled, open. */
  registration?: { enabled?: boolean; initialAccessToken?: string };
  /** Client ID Metadata Documents. Default enabled, public addresses only. */
  clientIdMetadataDocument?: ClientIdMetadataDocumentOptions;
  /** Failed-login limits per account and client address, per address, per account. Default 10/50/100 per 5 minutes. */
  loginRateLimit?: LoginRateLimit;
  /**
   * Trust `X-Forwarded-For` from one proxy hop (the client address for login rate limits). Default false. The scheme
   * and host of every URL the server derives always come from `issuer`, never from `Host` or `X-Forwarded-Host`.
   */
  proxy?: boolean;
  /**
   * Which proxies in front of this server may name the client address in `X-Forwarded-For` (for the login rate
   * limits): a hop count, or their addresses/CIDRs (`['loopback', '10.0.0.0/8']`). Implies `proxy`. Default: one hop
   * with `proxy: true`, else none (the socket address counts).
   */
  trustProxy?: TrustProxy;
  /** Structured logs (pino). Secrets and tokens are never logged. Default: silent. */
  logger?: Logger;
  /**
   * Upstream identity providers (GitHub, Google, Entra, any OIDC provider) from `createUpstreamIdentity()`: the
   * login page offers "Sign in with …" for each, upstream accounts resolve as token subjects, token exchange toward
   * an upstream-mapped resource answers with the user's upstream token, and a revoked grant deletes the user's
   * upstream tokens. See docs/upstream-identity.md.
   */
  upstream?: UpstreamIdentity;
  /**
   * Whether the login page shows the local username/password form. Default true. With `false` only the upstream
   * buttons are shown (and `authenticator` may be one that accepts no password).
   */
  localLogin?: boolean;
  /**
   * Send every login straight to this upstream, without showing the login page (for headless clients). Default:
   * the only upstream when `localLogin` is false and exactly one upstream is configured. An authorization request
   * may also choose one with the extra parameter `upstream=<name>`.
   */
  autoUpstream?: string;
  /**
   * How the service presents itself on the login and consent pages: its display name and a logo URL.
   *
   * @example
   * ```ts
   * const branding = { name: 'Acme MCP', logoUrl: 'https://acme.example/logo.svg' };
   * ```
   */
  branding?: Branding;
  /**
   * The device authorization grant (RFC 8628), for devices and terminals without a browser: on by default; `false`
   * turns it off. Its user-code page is `/device`; its tokens are bound to the `resource` of the device
   * authorization request, like the code flow's.
   *
   * @example
   * ```ts
   * const deviceFlow = { interval: 5, expiresIn: 600, userCodeAttempts: 10 };
   * ```
   */
  deviceFlow?: false | DeviceFlowOptions;
  /**
   * Extra oidc-provider configuration for what Gatehouse has no option for yet, deep-merged into Gatehouse's (objects
   * key by key; arrays and functions replace), so adding a `features` key keeps the MCP profile. The development
   * login pages stay off.
   */
  providerConfiguration?: Configuration;
}

/** A configured authorization server, not yet listening. */
export interface AuthorizationServer {
  readonly issuer: string;
  /** The underlying oidc-provider instance. */
  readonly provider: Provider;
  /** The store in use. */
  readonly adapter: AdapterFactory;
  /** A `node:http` listener serving every endpoint and page. */
  readonly listener: (req: IncomingMessage, res: ServerResponse) => void;
  /** Stops reading the stored keys again; closes the memory store it made itself (a store passed in stays open). */
  close(): Promise<void>;
}

const isForm = (req: IncomingMessage) =>
  (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');

/** Bad configuration given to {@link createAuthorizationServer}. */
export class AuthorizationServerConfigError extends GatehouseError {}

const INTERACTION_PATH = /^\/interaction\/[A-Za-z0-9_-]+(?:\/(?:login|confirm|abort|upstream\/[a-z][a-z0-9-]*))?$/;
const UPSTREAM_LINK_PATH = /^\/upstream\/([a-z][a-z0-9-]*)\/link$/;

function resourceServerSettings(indicator: string, config: ResourceConfig) {
  return resourceServerInfo({
    audience: indicator,
    scope: (config.scopes ?? []).map(scopeName).join(' '),
    accessTokenTtl: config.accessTokenTtl,
    format: config.accessTokenFormat,
    signingAlg: config.signingAlg,
  });
}

function checkClientRedirects(metadata: Record<string, unknown>): void {
  const uris = metadata['redirect_uris'];
  if (uris === undefined) return;
  if (!Array.isArray(uris)) throw new oidcErrors.InvalidRedirectUri('redirect_uris must be an array');
  for (const uri of uris) {
    const problem = redirectUriProblem(uri);
    if (problem) throw new oidcErrors.InvalidRedirectUri(problem);
  }
}

/**
 * Creates an MCP authorization server on oidc-provider with the MCP profile: authorization code with PKCE S256
 * only; exact redirect matching (loopback redirects on any port for native and CIMD clients); `iss` in
 * authorization responses (RFC 9207); resource indicators required and access tokens issued as JWTs (RFC 9068)
 * whose `aud` is the resource; rotated refresh tokens with reuse detection and a grace window; `client_credentials`;
 * token exchange (RFC 8693) by policy; dynamic registration (RFC 7591) and client ID metadata documents;
 * introspection; revocation; login and consent pages.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { createAuthorizationServer, staticUsers } from 'gatehouse/authorization-server';
 * import { oidcAdapterFactory } from 'gatehouse/storage';
 *
 * const as = await createAuthorizationServer({
 *   issuer: 'http://127.0.0.1:9000',
 *   authenticator: await staticUsers({ alice: 'wonderland' }),
 *   resources: [{ resource: 'http://127.0.0.1:8000/mcp', scopes: ['mcp:tools'] }],
 *   adapter: oidcAdapterFactory({ backend: 'sqlite', path: './gatehouse.db' }),
 *   tokenExchange: [
 *     { clientId: 'mcp-server', from: ['http://127.0.0.1:8000/mcp'], to: [{ resource: 'https://api.example.com', scopes: ['read'] }] },
 *   ],
 * });
 * createServer(as.listener).listen(9000, '127.0.0.1');
 * ```
 */
export async function createAuthorizationServer(options: AuthorizationServerOptions): Promise<AuthorizationServer> {
  let issuerUrl: URL;
  try {
    issuerUrl = new URL(options.issuer);
  } catch (cause) {
    throw new AuthorizationServerConfigError(`issuer ${options.issuer} is not a URL`, {
      code: 'ERR_AS_CONFIG',
      hint: 'Give the public base URL, e.g. https://auth.example.com',
      cause,
    });
  }
  const secure = issuerUrl.protocol === 'https:';
  const resources = new Map<string, ResourceConfig>();
  for (const r of options.resources) {
    try {
      // https except on loopback, as protect() requires: a token for an http resource would travel in clear.
      resources.set(canonicalResourceUri(assertSecureUrl(r.resource, 'a resource')), r);
    } catch (cause) {
      throw new AuthorizationServerConfigError((cause as Error).message, {
        code: 'ERR_AS_CONFIG',
        hint: 'A resource is an absolute https URL (or http on loopback) without a fragment, e.g. https://mcp.example.com/mcp',
        cause,
      });
    }
  }
  const resourceScopes = [...new Set(options.resources.flatMap((r) => (r.scopes ?? []).map(scopeName)))];
  // A memory store of its own sweeps expired entries on writes and, while idle, on its (unref'd) purge timer; it is
  // closed with the server. A caller's adapter stays the caller's to close.
  const ownAdapter = options.adapter ? undefined : memoryOidcAdapter();
  const adapter: AdapterFactory = options.adapter ?? ownAdapter!;
  // What oidc-provider sees: a store outage is its `503 temporarily_unavailable`, not a `500`.
  const guardedAdapter = withStoreAvailability(adapter);
  const logger = options.logger;
  const ring: KeyRing = options.keys
    ? fixedKeyRing(options.keys)
    : await openKeyRing(adapter(KEYS_MODEL), {
        retention: longestTokenLifetime(
          options.resources,
          options.providerConfiguration?.ttl as Record<string, unknown> | undefined,
        ),
        ...(options.keyRefreshSeconds !== undefined && { refreshSeconds: options.keyRefreshSeconds }),
        ...(options.keyRotationSeconds !== undefined && { rotateEverySeconds: options.keyRotationSeconds }),
        ...(options.keyActivationSeconds !== undefined && { activateIn: options.keyActivationSeconds }),
        ...(logger && { logger }),
      });
  const keys = ring.current();
  const graceSeconds = options.refreshTokenGraceSeconds ?? 5;
  const cimd = options.clientIdMetadataDocument ?? {};
  const cimdEnabled = cimd.enabled ?? true;

  // Every token request looks its resource up more than once (resource server info, token claims): the URL
  // parsing of canonicalisation is remembered for the indicators seen, up to a bound clients cannot push past.
  const resourceLookups = new Map<string, ResourceConfig | undefined>();
  const findResource = (indicator: string) => {
    if (resourceLookups.has(indicator)) return resourceLookups.get(indicator);
    const canonical = canonicalResourceUriOrUndefined(indicator);
    const config = canonical === undefined ? undefined : resources.get(canonical);
    if (resourceLookups.size < 256) resourceLookups.set(indicator, config);
    return config;
  };

  // Clients given in configuration follow the same rules as registered ones, and the same native inference.
  const clients = (options.clients ?? []).map((client) => {
    checkClientRedirects(client as Record<string, unknown>);
    return client.application_type === undefined && looksNative(client.redirect_uris)
      ? { ...client, application_type: 'native' as const }
      : client;
  });
  const upstream = options.upstream;
  if (upstream) {
    for (const p of upstream.providers) {
      if (p.name === 'callback') {
        throw new UpstreamConfigError('An upstream may not be named "callback".', 'Name it e.g. corp=oidc:https://…');
      }
    }
  }
  const upstreamNames = new Set(upstream?.providers.map((p) => p.name) ?? []);
  const autoUpstream =
    options.autoUpstream ??
    (options.localLogin === false && upstreamNames.size === 1 ? [...upstreamNames][0] : undefined);
  if (autoUpstream !== undefined && !upstreamNames.has(autoUpstream)) {
    throw new AuthorizationServerConfigError(`autoUpstream ${autoUpstream} is not a configured upstream`, {
      code: 'ERR_AS_CONFIG',
      hint: `Configured upstreams: ${[...upstreamNames].join(', ') || 'none'}.`,
    });
  }
  if (options.localLogin === false && upstreamNames.size === 0) {
    throw new AuthorizationServerConfigError('localLogin is off and no upstream is configured: nobody could log in', {
      code: 'ERR_AS_CONFIG',
      hint: 'Configure an upstream (--upstream github) or local users.',
    });
  }
  // Upstream subjects first (they are `u_…`), then the local users.
  let enterprise: EnterpriseAccounts | undefined;
  const findAccountFor = async (subject: string) => {
    if (enterprise?.owns(subject)) return { subject };
    const viaUpstream = upstream ? await upstream.findAccount(subject) : undefined;
    if (viaUpstream) return { subject: viaUpstream.subject, claims: viaUpstream.claims };
    return options.authenticator.findAccount ? await options.authenticator.findAccount(subject) : { subject };
  };

  const exchangers = new Set((options.tokenExchange ?? []).map((p) => p.clientId));
  for (const policy of options.tokenExchange ?? []) {
    for (const target of policy.to) {
      if (!findResource(target.resource) && !upstream?.upstreamForResource(target.resource)) {
        throw new AuthorizationServerConfigError(
          `token exchange target ${target.resource} is not a configured resource`,
          {
            code: 'ERR_AS_CONFIG',
            hint: 'Add it to resources (--resource URL=scope,…) or map it to an upstream (--upstream-resource URL=NAME), or remove it from the policy.',
          },
        );
      }
    }
  }

  const trustProxy = options.trustProxy ?? (options.proxy ? 1 : undefined);
  const branding = options.branding ?? {};
  const describeResource: DescribeResource = (indicator) => {
    const config = findResource(indicator);
    if (!config) return undefined;
    const scopes: Record<string, string> = {};
    for (const scope of config.scopes ?? []) {
      if (typeof scope !== 'string' && scope.description) scopes[scope.name] = scope.description;
    }
    return {
      ...(config.name !== undefined && { name: config.name }),
      scopes,
      offered: (config.scopes ?? []).map(scopeName),
    };
  };
  const loginLimiter = await createLoginLimiter(options.loginRateLimit);
  const device =
    options.deviceFlow === false
      ? undefined
      : { interval: 5, expiresIn: 600, userCodeAttempts: 10, ...options.deviceFlow };
  if (device && !(device.interval >= 1 && device.expiresIn >= 10 && device.userCodeAttempts >= 1)) {
    throw new AuthorizationServerConfigError('deviceFlow needs interval ≥ 1, expiresIn ≥ 10 and userCodeAttempts ≥ 1', {
      code: 'ERR_AS_CONFIG',
      hint: 'e.g. deviceFlow: { interval: 5, expiresIn: 600, userCodeAttempts: 10 }, or false to turn it off.',
    });
  }
  const userCodeLimiter =
    device &&
    createUserCodeLimiter(device.userCodeAttempts, {
      windowSeconds: options.loginRateLimit?.windowSeconds,
      store: options.loginRateLimit?.store,
    });

  const configuration: Configuration = {
    adapter: withRefreshGrace(guardedAdapter, graceSeconds) as unknown as Configuration['adapter'],
    clients,
    jwks: { keys: keys.signing as Configuration['jwks'] extends { keys: infer K } ? K : never },
    cookies: {
      keys: keys.cookies,
      names: secure
        ? { session: '__Host-gh_session', interaction: '__Secure-gh_interaction', resume: '__Secure-gh_resume' }
        : { session: 'gh_session', interaction: 'gh_interaction', resume: 'gh_resume' },
      long: { httpOnly: true, sameSite: 'lax', secure, path: '/' },
      short: { httpOnly: true, sameSite: 'lax', secure },
    },
    responseTypes: ['code'],
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', ...resourceScopes],
    claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: 'RS256',
    },
    enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] } as Configuration['enabledJWA'],
    // Every JWT access token is recorded as it is issued, so that introspection and revocation know it.
    formats: { customizers: { jwt: recordJwtAccessToken as never } },
    extraTokenClaims: async (ctx, token) => {
      const audience = (token as { aud?: unknown }).aud;
      const config = typeof audience === 'string' ? findResource(audience) : undefined;
      if (config?.requireDpop && !(token as { jkt?: string }).jkt) {
        throw new oidcErrors.InvalidRequest(`${config.resource} accepts only DPoP-bound tokens: send a DPoP proof`);
      }
      // When and how the user logged in (RFC 9068 §2.2.1), so resource servers can ask for a fresh login (RFC 9470).
      const exchanged = tokenExchangeClaims(token);
      const login = authenticationClaims(ctx);
      return exchanged || Object.keys(login).length ? { ...login, ...exchanged } : undefined;
    },
    // Runs for every client however it arrives (registration, configuration, metadata document): one rule set.
    extraClientMetadata: {
      properties: ['software_id', 'software_version'],
      validator(ctx, key, _value, metadata) {
        if (key !== 'software_id') return;
        checkClientRedirects(metadata as Record<string, unknown>);
        const raw = (ctx as { oidc?: { route?: string; body?: Record<string, unknown> } } | undefined)?.oidc;
        if (raw?.route === 'registration' && raw.body && raw.body['application_type'] === undefined) {
          if (looksNative(metadata['redirect_uris'])) metadata['application_type'] = 'native';
        }
        // The SDK registers with the scope of its first login; kept, it would refuse every MCP step-up (403
        // insufficient_scope -> a wider scope) with invalid_scope. The resources' scopes bound what is granted.
        if (raw?.route === 'registration') delete metadata['scope'];
      },
    },
    fetch: cimdFetch(cimd) as Configuration['fetch'],
    features: {
      devInteractions: { enabled: false },
      registration: {
        enabled: options.registration?.enabled ?? true,
        ...(options.registration?.initialAccessToken
          ? { initialAccessToken: options.registration.initialAccessToken }
          : {}),
      },
      registrationManagement: { enabled: false },
      // A confidential client (a resource server) may introspect any token; a public one only its own.
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) =>
          reachedLegitimately(ctx, token) && (client.clientAuthMethod !== 'none' || token.clientId === client.clientId),
      },
      // Only the client a token was issued to may revoke it.
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) =>
          reachedLegitimately(ctx, token) && token.clientId === client.clientId,
      },
      clientCredentials: { enabled: true },
      deviceFlow:
        device && userCodeLimiter
          ? deviceFlowFeature({ branding, describeResource, limiter: userCodeLimiter, trustProxy, logger })
          : { enabled: false },
      ...({
        clientIdMetadataDocument: {
          enabled: cimdEnabled,
          ack: 'draft-02',
          allowFetch: async (_ctx: unknown, id: string) => cimd.allowPrivateNetworks === true || publicTarget(id),
          cacheDuration: cimd.cacheSeconds ?? { min: 30, max: 86400 },
        },
      } as Record<string, unknown>),
      resourceIndicators: {
        enabled: true,
        // MCP clients must name the resource; without one there is no audience to bind the token to.
        defaultResource: async (_ctx, _client, oneOf) => {
          if (oneOf) return oneOf;
          throw new oidcErrors.InvalidTarget('the resource parameter is required');
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          const config = findResource(indicator);
          if (!config) throw new oidcErrors.InvalidTarget(`unknown resource ${indicator}`);
          return resourceServerSettings(indicator, config);
        },
      },
    },
    fetchResponseBodyLimits: { 'client_id metadata document': cimd.maxBytes ?? 5 * 1024 } as never,
    // `upstream=<name>` on an authorization request picks the upstream to sign in with (see autoUpstream).
    extraParams: [...(upstream ? ['upstream'] : []), ...STEP_UP_PARAMS],
    acrValues: [ACR.password, ...[...upstreamNames].map(upstreamAcr)],
    findAccount: async (_ctx, subject) => {
      const account = await findAccountFor(subject);
      if (!account) return undefined;
      return { accountId: subject, claims: async () => ({ sub: subject, ...account.claims }) };
    },
    // Consent is remembered per user and client, across sessions and browsers.
    loadExistingGrant: async (ctx) => {
      const clientId = ctx.oidc.client!.clientId;
      const grantId =
        ctx.oidc.result?.['consent']?.grantId ??
        ctx.oidc.session!.grantIdFor(clientId) ??
        (ctx.oidc.session?.accountId
          ? (
              (await guardedAdapter(CONSENT_MODEL).find(consentKey(ctx.oidc.session.accountId, clientId))) as
                | { grantId?: string }
                | undefined
            )?.grantId
          : undefined);
      if (!grantId) return undefined;
      const grant = await ctx.oidc.provider.Grant.find(grantId);
      if (grant && grant.accountId === ctx.oidc.session?.accountId && grant.clientId === clientId) {
        if (!ctx.oidc.session!.grantIdFor(clientId)) ctx.oidc.session!.grantIdFor(clientId, grantId);
        return grant;
      }
      return undefined;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}`, policy: stepUpPolicy() },
    issueRefreshToken: async (_ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') &&
      (code.scopes.has('offline_access') || client.applicationType === 'native'),
    rotateRefreshToken: true,
    ttl: {
      // The resource's lifetime (accessTokenTtl), for every grant.
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 3600,
      AuthorizationCode: 60,
      DeviceCode: device?.expiresIn ?? 600,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 3600,
      RefreshToken: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      for (const [name, value] of Object.entries(PAGE_HEADERS)) ctx.set(name, value);
      ctx.body = page(
        'Sign-in error',
        `<h1>Something went wrong</h1><p><code>${escapeHtml(out.error)}</code></p><p>${escapeHtml(
          out.error_description ?? '',
        )}</p>`,
      );
    },
  };

  const provider = new Provider(
    options.issuer,
    mergeProviderConfiguration(configuration, options.providerConfiguration),
  );
  // Applied once now, so a mismatch with oidc-provider's internals fails at start, not at the first rotation.
  applyProviderKeys(provider, keys);
  ring.onChange((next) => applyProviderKeys(provider, next));
  // Always on: the origin comes from the issuer through headers set by issuerOrigin, whatever the client sent.
  provider.proxy = true;
  const pinOrigin = issuerOrigin(options.issuer, trustProxy !== undefined);
  installRetryAfter(provider);

  // Redirect matching at /authorize: exact, or any loopback port for native and CIMD clients (field note 16).
  const clientPrototype = provider.Client.prototype as unknown as {
    redirectUriAllowed(this: { redirectUris: string[]; applicationType?: string }, value: string): boolean;
  };
  clientPrototype.redirectUriAllowed = function redirectUriAllowed(value) {
    const anyPort =
      this.applicationType === 'native' ||
      (this as unknown as { clientIdMetadataDocument?: boolean }).clientIdMetadataDocument === true;
    return redirectMatches(value, this.redirectUris, anyPort);
  };

  installRefreshGrace(provider, guardedAdapter, graceSeconds);
  if (device) {
    installDevicePolling(provider, guardedAdapter, device);
    installDeviceCodeLink(provider, branding);
  }
  if (exchangers.size) {
    installTokenExchange(provider, {
      issuer: options.issuer,
      policies: options.tokenExchange ?? [],
      signingKeys: () => ring.current().signing as JWK[],
      accountActive: async (subject) => (await findAccountFor(subject)) !== undefined,
      resourceServer: (resource) => {
        const config = findResource(resource);
        return config && resourceServerSettings(resource, config);
      },
      upstream,
    });
  }

  if (options.enterpriseIdps?.length) {
    enterprise = installIdentityAssertionGrant(provider, {
      issuer: options.issuer,
      idps: options.enterpriseIdps,
      store: guardedAdapter,
      resource: (indicator) => {
        const config = findResource(indicator);
        return config && { scopes: (config.scopes ?? []).map(scopeName) };
      },
      resourceServer: (resource) => {
        const config = findResource(resource);
        return config && resourceServerSettings(resource, config);
      },
      localAccount: async (subject) =>
        (options.authenticator.findAccount ? await options.authenticator.findAccount(subject) : undefined) !==
        undefined,
    });
  }

  // A revoked grant (revocation of a refresh token, refresh-token reuse) forgets the user's upstream tokens.
  if (upstream) {
    provider.on('grant.revoked', (ctx, grantId) => {
      const entities = (ctx.oidc?.entities ?? {}) as Record<string, { accountId?: string } | undefined>;
      const accountId =
        entities['RefreshToken']?.accountId ??
        entities['AccessToken']?.accountId ??
        entities['AuthorizationCode']?.accountId ??
        entities['Grant']?.accountId ??
        entities['Account']?.accountId;
      if (!accountId) return;
      upstream.deleteForSubject(accountId).catch((error: unknown) => {
        logger?.error({ grantId, err: { message: (error as Error)?.message } }, 'deleting upstream tokens failed');
      });
    });
  }

  if (logger) {
    provider.on('server_error', (_ctx, error) =>
      logger.error({ err: { name: error.name, message: error.message } }, 'server error'),
    );
    provider.on('grant.success', (ctx) =>
      logger.info({ client: ctx.oidc.client?.clientId, grantType: ctx.oidc.params?.['grant_type'] }, 'token issued'),
    );
    provider.on('grant.error', (ctx, error) =>
      logger.info(
        {
          client: ctx.oidc.client?.clientId,
          grantType: ctx.oidc.params?.['grant_type'],
          error: (error as { error?: string }).error,
        },
        'token request refused',
      ),
    );
    provider.on('grant.revoked', (_ctx, grantId) => logger.warn({ grantId }, 'grant revoked'));
    provider.on('authorization.error', (ctx, error) =>
      logger.info(
        { client: ctx.oidc?.client?.clientId, error: (error as { error?: string }).error },
        'authorization refused',
      ),
    );
    provider.on('registration_create.success', (_ctx, client) =>
      logger.info({ client: client.clientId }, 'client registered'),
    );
  }

  const interactions = createInteractionHandler(provider, {
    authenticator: options.authenticator,
    upstream,
    localLogin: options.localLogin ?? true,
    autoUpstream,
    formTokenSecrets: () => formTokenSecrets(ring.current()),
    adapter,
    loginLimiter,
    trustProxy,
    secure,
    logger,
    branding,
    describeResource,
    findAccount: findAccountFor,
  });
  const oidcListener = provider.callback();
  const jwtFront = structuredTokenFront({
    issuer: options.issuer,
    signingKeys: () => ring.current().signing as JWK[],
    paths: ['/token/introspection', '/token/revocation'],
    next: oidcListener,
  });

  // An authorization request (or device authorization request) without `scope` gets the named resource's default
  // scopes. Says whether it changed the parameters.
  const addDefaultScope = (params: URLSearchParams): boolean => {
    const resource = params.getAll('resource');
    if ((params.get('scope') ?? '').trim() !== '' || resource.length !== 1) return false;
    const config = findResource(resource[0]!);
    const scopes = config?.defaultScopes ?? config?.scopes?.map(scopeName) ?? [];
    if (scopes.length === 0) return false;
    params.set('scope', scopes.join(' '));
    return true;
  };
  const withDefaultScope = (url: string): string => {
    const query = url.indexOf('?');
    if (query === -1) return url;
    const params = new URLSearchParams(url.slice(query + 1));
    return addDefaultScope(params) ? `${url.slice(0, query)}?${params.toString()}` : url;
  };
  const guardUserCode = userCodeLimiter && userCodeGuard({ limiter: userCodeLimiter, trustProxy, branding, logger });

  const health = healthEndpoints(adapter(KEYS_MODEL), KEYS_ID);
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    if (health(req, res)) return;
    pinOrigin(req);
    ring.current(); // a key whose activation (or drop) time has passed takes effect before this request
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/auth' && req.method === 'GET') req.url = withStepUpParams(withDefaultScope(req.url ?? '/'));
    const upstreamRoute =
      upstream && req.method === 'GET' && (path === '/upstream/callback' || UPSTREAM_LINK_PATH.test(path));
    if (INTERACTION_PATH.test(path) || upstreamRoute) {
      interactions(req, res).catch((error: unknown) => {
        if (isStoreOutage(error)) return answerStoreOutage(req, res, error);
        logger?.error({ err: { message: (error as Error)?.message } }, 'interaction failed');
        if (!res.headersSent) res.writeHead(500, PAGE_HEADERS);
        res.end(page('Error', '<h1>Something went wrong</h1>'));
      });
      return;
    }
    if (jwtFront(req, res, path)) return;
    if (device && req.method === 'POST' && path === '/device/auth' && isForm(req)) {
      withFormBody(req, res, oidcListener, addDefaultScope);
      return;
    }
    if (guardUserCode && req.method === 'POST' && path === '/device') {
      guardUserCode(req, res).then(
        (answered) => {
          if (!answered) oidcListener(req, res);
        },
        (error: unknown) => {
          if (isStoreOutage(error)) return answerStoreOutage(req, res, error);
          logger?.error({ err: { message: (error as Error)?.message } }, 'user code limit check failed');
          if (!res.headersSent) res.writeHead(500, PAGE_HEADERS);
          res.end(page('Error', '<h1>Something went wrong</h1>'));
        },
      );
      return;
    }
    if (
      path === '/reg' &&
      req.method === 'POST' &&
      (req.headers['content-type'] ?? '').startsWith('application/json')
    ) {
      // No token_endpoint_auth_method means this server's default, `none` (public MCP clients): no secret.
      withJsonBody(req, res, oidcListener, (body) => {
        body['token_endpoint_auth_method'] ??= 'none';
      });
      return;
    }
    oidcListener(req, res);
  };

  return {
    issuer: options.issuer,
    provider,
    adapter,
    listener,
    close: async () => {
      await ring.close();
      await ownAdapter?.close();
    },
  };
}
