import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, customFetch, type JWTPayload, jwtVerify } from 'jose';
import type { Logger } from 'pino';
import { constantTimeEqual } from '../../oauth/constant-time.js';
import { canonicalResourceUri } from '../../oauth/resource-uri.js';
import { TOKEN_TYPE } from '../../oauth/token-exchange.js';
import { type EncryptedStoreOptions, encryptedStore } from '../../storage/encrypted.js';
import type { KeyValueStore, StoreInput } from '../../storage/types.js';
import type { Account, Authenticator } from '../users.js';
import { type AdmissionRules, admissionProblem, UpstreamAccounts, type UpstreamUser } from './accounts.js';
import { UpstreamConfigError, UpstreamError } from './errors.js';
import { getJson, tokenRequest } from './http.js';
import type { UpstreamContext, UpstreamEndpoints, UpstreamProfile, UpstreamProvider } from './providers.js';
import { type UpstreamAccessToken, UpstreamTokenVault } from './vault.js';

/** A resource whose tokens are the user's own upstream tokens (e.g. `https://api.github.com` → `github`). */
export interface UpstreamResource {
  /** The resource indicator MCP servers ask for (`grant('https://api.github.com')`). */
  resource: string;
  /** The upstream whose access token is handed out for it. */
  upstream: string;
  /** Scopes the upstream token must carry for this resource, checked when the upstream reports scopes. */
  scopes?: string[];
}

/** Options of {@link createUpstreamIdentity}. */
export interface UpstreamIdentityOptions {
  /** Gatehouse's public base URL (its issuer). The default callback and link URLs live under it. */
  issuer: string;
  providers: UpstreamProvider[];
  /**
   * Where pending logins, accounts and upstream tokens live: any Gatehouse store, Keyv instance or adapter. Every
   * value is encrypted before it reaches this store ({@link encryption}).
   */
  store: StoreInput;
  /** The key(s) for `encryptedStore` (JWE dir/A256GCM). Required: upstream tokens are never stored in clear. */
  encryption: EncryptedStoreOptions;
  /** Resources served with the user's upstream token (see {@link UpstreamResource}). */
  resources?: UpstreamResource[];
  /** Join a new upstream identity to the account that has its verified email. Default false. */
  linkByVerifiedEmail?: boolean;
  /** Admission rules for every upstream (each provider may add its own). */
  admission?: AdmissionRules;
  /** The redirect URI registered at every upstream. Default `<issuer>/upstream/callback`. */
  callbackUrl?: string;
  /**
   * Where a user links (or re-grants) an upstream, given its name and the scopes it lacks. Default
   * `<issuer>/upstream/<name>/link[?scope=…]`: the authorization server serves that page.
   */
  linkUrl?: (upstream: string, scopes?: readonly string[]) => string;
  /** Lifetime of a pending upstream login in seconds. Default 600. */
  loginTtlSeconds?: number;
  /** Upper bound of `expires_in` in delegated-token answers (and for tokens without a lifetime). Default 3600. */
  maxExpiresIn?: number;
  /** Timeout of one upstream request in ms. Default 10 000. */
  timeoutMs?: number;
  /** Tolerated clock skew when checking ID tokens, in seconds. Default 60. */
  clockToleranceSeconds?: number;
  /** Structured logs. Tokens, codes, state and nonces are never logged. */
  logger?: Logger;
  /**
   * Called once a login stored the user's tokens at an upstream (a sign-in or a link): what waits on that user
   * linking the upstream can go on (the gateway tells MCP clients it asked to link, `notifications/elicitation/complete`).
   */
  onTokensStored?: (event: { subject: string; upstream: string }) => void;
  /** For tests. */
  fetch?: typeof fetch;
  /** For tests: the clock in milliseconds. */
  now?: () => number;
}

/** A pending upstream login, bound to one interaction; single use. */
interface PendingLogin {
  version: 1;
  upstream: string;
  interactionUid: string;
  state: string;
  nonce: string;
  codeVerifier: string;
  redirectUri: string;
  linkTo?: string;
  expiresAt: number;
}

/** What {@link UpstreamIdentity.completeUpstreamLogin} returns: the local account, ready for `interactionFinished`. */
export interface UpstreamLoginResult extends Account {
  subject: string;
  claims: Record<string, unknown>;
  /** The upstream used. */
  upstream: string;
  /** True when this login created the account. */
  created: boolean;
  /** True when this login joined an existing account (by `linkTo` or by verified email). */
  linked: boolean;
}

/** The answer to a delegated-token request: RFC 8693 §2.2.1 members. */
export interface UpstreamTokenExchangeResponse {
  access_token: string;
  issued_token_type: typeof TOKEN_TYPE.accessToken;
  token_type: 'Bearer';
  expires_in: number;
  scope?: string;
}

/** The engine: login round trips, accounts, the token vault and delegated access. See {@link createUpstreamIdentity}. */
export interface UpstreamIdentity {
  readonly providers: readonly UpstreamProvider[];
  /** The redirect URI to register at every upstream. */
  readonly callbackUrl: string;
  readonly accounts: UpstreamAccounts;
  /** Starts a login at `provider` for the interaction `interactionUid`; redirect the browser to the URL. */
  beginUpstreamLogin(options: {
    provider: string;
    interactionUid: string;
    redirectUri?: string;
    /** Scopes beyond the provider's (to re-grant a scope a resource needs). */
    scopes?: readonly string[];
    /** Link the upstream identity to this existing local account (a signed-in user connecting an upstream). */
    linkTo?: string;
  }): Promise<{ authorizationUrl: string }>;
  /**
   * Which interaction an upstream callback belongs to, from its `state`, without consuming anything. The fixed
   * callback route uses it to send the browser on to `/interaction/<uid>/…`, where oidc-provider's cookie proves
   * it is the same browser.
   */
  resolveUpstreamCallback(callbackUrl: string | URL): Promise<{ interactionUid: string; upstream: string }>;
  /** Finishes the login: state, binding, code exchange, ID token or user API, admission, account, tokens. */
  completeUpstreamLogin(options: { callbackUrl: string | URL; interactionUid: string }): Promise<UpstreamLoginResult>;
  /** A live upstream access token for a user, refreshed if needed. */
  getUpstreamAccessToken(subject: string, upstream: string): Promise<UpstreamAccessToken>;
  /** The upstream mapping of a resource, if it has one. */
  upstreamForResource(resource: string): UpstreamResource | undefined;
  /** The user's upstream token for `resource`, as a token-exchange answer; throws {@link UpstreamError}. */
  exchangeForUpstreamResource(options: {
    subject: string;
    resource: string;
    scopes?: readonly string[];
  }): Promise<UpstreamTokenExchangeResponse>;
  /** Deletes every upstream token of a user (their grant was revoked). Accounts stay. */
  deleteForSubject(subject: string): Promise<void>;
  /** Removes an upstream identity (or all) from a user, with its tokens. */
  unlink(subject: string, upstream?: string): Promise<void>;
  /** The account of a subject (for oidc-provider's `findAccount`). */
  findAccount(subject: string): Promise<(Account & { user: UpstreamUser }) | undefined>;
  /** Where the user links or re-grants `upstream`. */
  linkUrl(upstream: string, scopes?: readonly string[]): string;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest();

const USER_ERRORS: Record<string, string> = {
  access_denied: 'You declined the request at {name}, so you are not signed in.',
  temporarily_unavailable: '{name} is temporarily unavailable. Try again in a moment.',
  server_error: '{name} had a problem. Try again in a moment.',
};

/**
 * Creates the upstream-identity engine: users sign in through GitHub, Google, Entra or any OIDC provider, and MCP
 * servers get the user's upstream token by token exchange — without it ever passing through the MCP client.
 *
 * @example
 * ```ts
 * import { createUpstreamIdentity, githubUpstream, oidcUpstream } from 'gatehouse/authorization-server';
 * import { sqliteStore } from 'gatehouse/storage';
 *
 * const upstream = createUpstreamIdentity({
 *   issuer: 'https://auth.example.com',
 *   providers: [
 *     githubUpstream({ clientId: process.env.GH_ID!, clientSecret: process.env.GH_SECRET, scopes: ['read:user', 'user:email', 'repo'] }),
 *     oidcUpstream({ name: 'corp', issuer: 'https://idp.example.com', clientId: 'gatehouse', clientSecret: process.env.CORP_SECRET }),
 *   ],
 *   store: sqliteStore('./gatehouse-upstream.db'),
 *   encryption: { keys: [process.env.GATEHOUSE_UPSTREAM_KEY!] },
 *   resources: [{ resource: 'https://api.github.com', upstream: 'github' }],
 *   admission: { allowedEmailDomains: ['example.com'] },
 * });
 *
 * // login page: "Sign in with GitHub"
 * const { authorizationUrl } = await upstream.beginUpstreamLogin({ provider: 'github', interactionUid: uid });
 * // callback, inside /interaction/<uid>/…
 * const account = await upstream.completeUpstreamLogin({ callbackUrl: req.url, interactionUid: uid });
 * // token exchange toward https://api.github.com
 * const answer = await upstream.exchangeForUpstreamResource({ subject: account.subject, resource: 'https://api.github.com' });
 * ```
 */
export function createUpstreamIdentity(options: UpstreamIdentityOptions): UpstreamIdentity {
  const issuer = options.issuer.replace(/\/+$/, '');
  const providers = new Map<string, UpstreamProvider>();
  for (const provider of options.providers) {
    if (providers.has(provider.name)) {
      throw new UpstreamConfigError(
        `Two upstreams are named "${provider.name}".`,
        'Give each a distinct name (e.g. corp=oidc:https://…).',
      );
    }
    providers.set(provider.name, provider);
  }
  const resources = new Map<string, UpstreamResource>();
  for (const mapping of options.resources ?? []) {
    if (!providers.has(mapping.upstream)) {
      throw new UpstreamConfigError(
        `The resource ${mapping.resource} maps to the upstream "${mapping.upstream}", which is not configured.`,
        `Configured upstreams: ${[...providers.keys()].join(', ') || 'none'}.`,
      );
    }
    resources.set(canonicalResourceUri(mapping.resource), mapping);
  }
  const store: KeyValueStore = encryptedStore(options.store, options.encryption);
  const now = options.now ?? Date.now;
  const fetchFn = options.fetch ?? globalThis.fetch;
  const context: UpstreamContext = { fetch: fetchFn, timeoutMs: options.timeoutMs ?? 10_000 };
  const callbackUrl = options.callbackUrl ?? `${issuer}/upstream/callback`;
  const loginTtl = (options.loginTtlSeconds ?? 600) * 1000;
  const maxExpiresIn = options.maxExpiresIn ?? 3600;
  const logger = options.logger;
  const linkUrl =
    options.linkUrl ??
    ((upstream: string, scopes?: readonly string[]) => {
      const url = new URL(`${issuer}/upstream/${encodeURIComponent(upstream)}/link`);
      if (scopes?.length) url.searchParams.set('scope', scopes.join(' '));
      return url.href;
    });
  const accounts = new UpstreamAccounts(store, { linkByVerifiedEmail: options.linkByVerifiedEmail, now });
  const vault = new UpstreamTokenVault({ store, providers, context, now, linkUrl, logger });
  const jwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  const providerOf = (name: string): UpstreamProvider => {
    const provider = providers.get(name);
    if (!provider) {
      throw new UpstreamError({
        error: 'invalid_request',
        reason: 'unknown_upstream',
        description: `no upstream named ${name} is configured`,
        userMessage: 'This sign-in option is not available.',
        upstream: name,
      });
    }
    return provider;
  };

  const pendingKey = (uid: string) => `pending:${encodeURIComponent(uid)}`;
  const stateKey = (state: string) => `state:${sha256(state).toString('base64url')}`;

  const expired = (upstream?: string) =>
    new UpstreamError({
      error: 'access_denied',
      reason: 'login_expired',
      description: 'no pending upstream login for this interaction (expired, finished, or never started)',
      userMessage: 'This sign-in has expired or was already used. Go back to the application and start again.',
      upstream,
    });

  async function validateIdToken(
    provider: UpstreamProvider,
    endpoints: UpstreamEndpoints,
    idToken: string,
    nonce: string,
  ): Promise<JWTPayload> {
    let set = jwks.get(provider.name);
    if (!set) {
      set = createRemoteJWKSet(new URL(endpoints.jwksUri!), {
        timeoutDuration: context.timeoutMs,
        [customFetch]: (url: string, init: RequestInit) => fetchFn(url, init),
      });
      jwks.set(provider.name, set);
    }
    const invalid = (description: string, cause?: unknown) =>
      new UpstreamError({
        error: 'access_denied',
        reason: 'id_token_invalid',
        description: `${provider.displayName} ID token ${description}`,
        userMessage: `We could not verify the sign-in from ${provider.displayName}. Try again.`,
        upstream: provider.name,
        cause,
      });
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(idToken, set, {
        audience: provider.clientId,
        clockTolerance: options.clockToleranceSeconds ?? 60,
        currentDate: new Date(now()),
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
      }));
    } catch (cause) {
      throw invalid(`is invalid: ${(cause as Error).message}`, cause);
    }
    const expectedIssuer = endpoints.issuer!.includes('{tenantid}')
      ? typeof payload['tid'] === 'string'
        ? endpoints.issuer!.replace('{tenantid}', payload['tid'])
        : undefined
      : endpoints.issuer;
    if (payload.iss !== expectedIssuer) throw invalid(`was issued by ${payload.iss}, not ${expectedIssuer}`);
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload['azp'] !== provider.clientId) {
      throw invalid('names several audiences but another authorized party');
    }
    if (typeof payload['nonce'] !== 'string' || !constantTimeEqual(payload['nonce'], nonce)) {
      throw new UpstreamError({
        error: 'access_denied',
        reason: 'nonce_mismatch',
        description: `${provider.displayName} ID token nonce does not match this login`,
        userMessage: `The sign-in from ${provider.displayName} does not belong to this session. Start again.`,
        upstream: provider.name,
      });
    }
    return payload;
  }

  async function oidcProfile(
    provider: UpstreamProvider,
    endpoints: UpstreamEndpoints,
    idToken: string | undefined,
    accessToken: string,
    nonce: string,
  ): Promise<UpstreamProfile> {
    if (!idToken) {
      throw new UpstreamError({
        error: 'access_denied',
        reason: 'id_token_invalid',
        description: `${provider.displayName} returned no ID token (is "openid" among the scopes?)`,
        userMessage: `${provider.displayName} did not confirm who you are. Tell the administrator.`,
        upstream: provider.name,
      });
    }
    const payload = await validateIdToken(provider, endpoints, idToken, nonce);
    let claims: Record<string, unknown> = { ...payload };
    if (endpoints.userinfoEndpoint) {
      const info = await getJson({
        upstream: provider.name,
        displayName: provider.displayName,
        url: endpoints.userinfoEndpoint,
        accessToken,
        ...context,
      });
      // OIDC Core §5.3.2: userinfo must be about the ID token's subject, else ignore it.
      if (info && info['sub'] === payload.sub) claims = { ...info, ...payload };
    }
    for (const protocolClaim of ['nonce', 'at_hash', 'c_hash', 'auth_time', 'acr', 'amr', 'azp', 'sid'])
      delete claims[protocolClaim];
    return provider.profileFromClaims!(claims);
  }

  function upstreamForResource(resource: string): UpstreamResource | undefined {
    try {
      return resources.get(canonicalResourceUri(resource));
    } catch {
      return undefined;
    }
  }

  return {
    providers: [...providers.values()],
    callbackUrl,
    accounts,

    async beginUpstreamLogin({ provider: name, interactionUid, redirectUri, scopes, linkTo }) {
      const provider = providerOf(name);
      if (!interactionUid) throw new TypeError('beginUpstreamLogin: interactionUid is required');
      const endpoints = await provider.endpoints(context);
      const state = randomBytes(32).toString('base64url');
      const nonce = randomBytes(32).toString('base64url');
      const codeVerifier = randomBytes(32).toString('base64url');
      const redirect = redirectUri ?? callbackUrl;
      const pending: PendingLogin = {
        version: 1,
        upstream: provider.name,
        interactionUid,
        state,
        nonce,
        codeVerifier,
        redirectUri: redirect,
        ...(linkTo !== undefined && { linkTo }),
        expiresAt: now() + loginTtl,
      };
      // Keyed by interaction: a second "Sign in with …" in the same interaction replaces the first.
      await store.set(pendingKey(interactionUid), pending, loginTtl);
      await store.set(stateKey(state), { interactionUid, upstream: provider.name }, loginTtl);
      const url = new URL(endpoints.authorizationEndpoint);
      const allScopes = [...new Set([...provider.scopes, ...(scopes ?? [])])];
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('client_id', provider.clientId);
      url.searchParams.set('redirect_uri', redirect);
      if (allScopes.length) url.searchParams.set('scope', allScopes.join(' '));
      url.searchParams.set('state', state);
      url.searchParams.set('code_challenge', createHash('sha256').update(codeVerifier).digest('base64url'));
      url.searchParams.set('code_challenge_method', 'S256');
      if (provider.protocol === 'oidc') url.searchParams.set('nonce', nonce);
      for (const [k, v] of Object.entries(provider.authorizationParams)) url.searchParams.set(k, v);
      logger?.info({ upstream: provider.name }, 'upstream login started');
      return { authorizationUrl: url.href };
    },

    async resolveUpstreamCallback(callback) {
      const state = new URL(String(callback)).searchParams.get('state');
      if (!state) throw expired();
      const found = (await store.get(stateKey(state))) as { interactionUid: string; upstream: string } | undefined;
      if (!found) throw expired();
      return { interactionUid: found.interactionUid, upstream: found.upstream };
    },

    async completeUpstreamLogin({ callbackUrl: callback, interactionUid }) {
      const url = new URL(String(callback));
      const params = url.searchParams;
      const pending = (await store.get(pendingKey(interactionUid))) as PendingLogin | undefined;
      if (pending?.version !== 1 || pending.expiresAt <= now()) throw expired();
      const provider = providerOf(pending.upstream);
      const state = params.get('state') ?? '';
      // Constant time, and bound to this interaction: a callback for another browser's login is refused.
      if (!constantTimeEqual(state, pending.state) || pending.interactionUid !== interactionUid) {
        logger?.warn({ upstream: provider.name }, 'upstream callback refused: state does not match');
        throw new UpstreamError({
          error: 'access_denied',
          reason: 'state_mismatch',
          description: 'the upstream callback state does not match this interaction',
          userMessage: 'This sign-in response does not belong to your session, so it was refused. Start again.',
          upstream: provider.name,
        });
      }
      // Single use: consumed before anything else can fail.
      await store.delete(pendingKey(interactionUid));
      await store.delete(stateKey(pending.state));

      const upstreamError = params.get('error');
      if (upstreamError) {
        const description = params.get('error_description')?.slice(0, 300);
        const code =
          upstreamError === 'access_denied' || upstreamError === 'temporarily_unavailable'
            ? upstreamError
            : upstreamError === 'server_error'
              ? 'temporarily_unavailable'
              : 'access_denied';
        logger?.info({ upstream: provider.name, error: upstreamError }, 'upstream login refused by the upstream');
        throw new UpstreamError({
          error: code,
          reason: upstreamError === 'access_denied' ? 'upstream_denied' : 'upstream_error',
          description: `${provider.displayName} answered ${upstreamError}${description ? `: ${description}` : ''}`,
          userMessage: (
            USER_ERRORS[upstreamError] ?? `{name} could not sign you in (${upstreamError}). Try again.`
          ).replace('{name}', provider.displayName),
          upstream: provider.name,
        });
      }
      // RFC 9207: when the upstream names itself, it must be the one we sent the user to.
      const endpoints = await provider.endpoints(context);
      const iss = params.get('iss');
      if (iss !== null && endpoints.issuer && !endpoints.issuer.includes('{tenantid}') && iss !== endpoints.issuer) {
        throw new UpstreamError({
          error: 'access_denied',
          reason: 'upstream_error',
          description: `the callback names the issuer ${iss}, not ${endpoints.issuer}`,
          userMessage: 'This sign-in response came from an unexpected provider, so it was refused. Start again.',
          upstream: provider.name,
        });
      }
      const code = params.get('code');
      if (!code) {
        throw new UpstreamError({
          error: 'access_denied',
          reason: 'upstream_error',
          description: `${provider.displayName} callback has no code`,
          userMessage: `${provider.displayName} did not complete the sign-in. Try again.`,
          upstream: provider.name,
        });
      }
      const tokens = await tokenRequest({
        upstream: provider.name,
        displayName: provider.displayName,
        endpoint: endpoints.tokenEndpoint,
        params: new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: pending.redirectUri,
          code_verifier: pending.codeVerifier,
        }),
        clientId: provider.clientId,
        clientSecret: provider.clientSecret,
        auth: provider.tokenEndpointAuthMethod,
        ...context,
      }).catch((error: unknown) => {
        // A refused code is the login failing, not a revoked grant: say so to the MCP client as access_denied.
        if (error instanceof UpstreamError && error.error === 'invalid_grant') {
          throw new UpstreamError({
            error: 'access_denied',
            reason: 'upstream_error',
            description: error.description ?? 'the upstream refused the code',
            userMessage: error.userMessage,
            upstream: provider.name,
            cause: error,
          });
        }
        throw error;
      });
      const profile =
        provider.protocol === 'oidc'
          ? await oidcProfile(provider, endpoints, tokens.id_token, tokens.access_token, pending.nonce)
          : await provider.fetchProfile!(tokens.access_token, context);

      const problem = admissionProblem(profile, options.admission) ?? admissionProblem(profile, provider.admission);
      if (problem) {
        logger?.info({ upstream: provider.name }, 'upstream login refused by the admission rules');
        throw new UpstreamError({
          error: 'access_denied',
          reason: 'admission_denied',
          description: `the ${provider.displayName} account is not admitted: ${problem}`,
          userMessage: `You cannot sign in here with this ${provider.displayName} account: ${problem}.`,
          upstream: provider.name,
        });
      }
      const { user, created, linked } = await accounts.resolve(provider.name, profile, {
        ...(pending.linkTo !== undefined && { linkTo: pending.linkTo }),
      });
      await vault.save(user.subject, provider.name, tokens, await vault.read(user.subject, provider.name));
      logger?.info({ upstream: provider.name, subject: user.subject, created, linked }, 'upstream login completed');
      options.onTokensStored?.({ subject: user.subject, upstream: provider.name });
      return { subject: user.subject, claims: { ...user.claims }, upstream: provider.name, created, linked };
    },

    getUpstreamAccessToken(subject, upstream) {
      return vault.get(subject, upstream);
    },

    upstreamForResource,

    async exchangeForUpstreamResource({ subject, resource, scopes }) {
      const mapping = upstreamForResource(resource);
      if (!mapping) {
        throw new UpstreamError({
          error: 'invalid_target',
          reason: 'unknown_resource',
          description: `${resource} is not served by an upstream`,
          userMessage: 'This resource is not available.',
        });
      }
      const token = await vault.get(subject, mapping.upstream);
      const needed = [...new Set([...(mapping.scopes ?? []), ...(scopes ?? [])])];
      if (token.scope) {
        const missing = needed.filter((s) => !token.scope!.includes(s));
        if (missing.length) throw vault.insufficientScope(mapping.upstream, missing);
      }
      const remaining =
        token.expires_at === undefined ? maxExpiresIn : token.expires_at - Math.floor(now() / 1000) - 30;
      return {
        access_token: token.access_token,
        issued_token_type: TOKEN_TYPE.accessToken,
        token_type: 'Bearer',
        expires_in: Math.max(1, Math.min(maxExpiresIn, remaining)),
        ...(token.scope && { scope: token.scope.join(' ') }),
      };
    },

    async deleteForSubject(subject) {
      const user = await accounts.find(subject);
      const names = new Set([...providers.keys(), ...(user?.identities.map((i) => i.upstream) ?? [])]);
      for (const name of names) await vault.delete(subject, name);
      logger?.info({ subject }, 'upstream tokens deleted');
    },

    async unlink(subject, upstream) {
      const removed = await accounts.unlink(subject, upstream);
      for (const identity of removed) await vault.delete(subject, identity.upstream);
    },

    async findAccount(subject) {
      const user = await accounts.find(subject);
      return user ? { subject: user.subject, claims: { ...user.claims }, user } : undefined;
    },

    linkUrl,
  };
}

/**
 * An {@link Authenticator} that knows upstream accounts by subject (for token claims) and never accepts a password:
 * combine it with the local users so oidc-provider's `findAccount` resolves both.
 *
 * @example
 * ```ts
 * import { anyOf, usersFile } from 'gatehouse/authorization-server';
 *
 * const authenticator = anyOf(await usersFile('users.json'), upstreamAuthenticator(upstream));
 * ```
 */
export function upstreamAuthenticator(identity: UpstreamIdentity): Authenticator {
  return {
    async authenticate() {
      return undefined;
    },
    async findAccount(subject) {
      const account = await identity.findAccount(subject);
      return account ? { subject: account.subject, claims: account.claims } : undefined;
    },
  };
}
