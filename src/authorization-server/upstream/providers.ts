import { assertSecureUrl } from '../../oauth/resource-uri.js';
import type { AdmissionRules } from './accounts.js';
import { UpstreamConfigError, UpstreamError } from './errors.js';
import { getJson, type UpstreamClientAuth } from './http.js';

/** Where an upstream's endpoints are. OIDC upstreams fill this from discovery. */
export interface UpstreamEndpoints {
  authorizationEndpoint: string;
  tokenEndpoint: string;
  /** OIDC only: the issuer ID tokens must carry (Entra multi-tenant: with `{tenantid}`). */
  issuer?: string;
  jwksUri?: string;
  userinfoEndpoint?: string;
  revocationEndpoint?: string;
}

/** Who the upstream says the user is. `claims` are the raw claims the admission rules look at. */
export interface UpstreamProfile {
  /** The upstream's stable identifier of the user (`sub`, or GitHub's numeric `id`). */
  subject: string;
  email?: string;
  /** True only when the upstream vouches for the address. */
  emailVerified?: boolean;
  name?: string;
  username?: string;
  picture?: string;
  claims: Record<string, unknown>;
}

/** What a provider needs to do its part of a request. */
export interface UpstreamContext {
  fetch: typeof fetch;
  timeoutMs: number;
}

/**
 * One upstream identity provider. Build it with {@link oidcUpstream}, {@link githubUpstream},
 * {@link googleUpstream}, {@link entraUpstream} or {@link parseUpstreamSpec}; the engine does the rest.
 */
export interface UpstreamProvider {
  /** Short name: lower-case letters, digits and `-`. Used in store keys, URLs and env-variable names. */
  readonly name: string;
  /** Shown on the login page: "Sign in with …". */
  readonly displayName: string;
  /** `oidc`: ID token validated (discovery, nonce). `oauth2`: user read from an API ({@link fetchProfile}). */
  readonly protocol: 'oidc' | 'oauth2';
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  /** Scopes asked for at login. */
  readonly scopes: readonly string[];
  /** Extra authorization-request parameters (Google: `access_type=offline`, `prompt=consent`). */
  readonly authorizationParams: Readonly<Record<string, string>>;
  readonly tokenEndpointAuthMethod: UpstreamClientAuth;
  /** Admission rules of this upstream, applied with the engine's. */
  readonly admission: AdmissionRules | undefined;
  /** The endpoints (OIDC: discovered once, then cached). */
  endpoints(context: UpstreamContext): Promise<UpstreamEndpoints>;
  /** OIDC: maps ID-token and userinfo claims to a profile. */
  profileFromClaims?(claims: Record<string, unknown>): UpstreamProfile;
  /** OAuth 2.0 upstreams: reads the user with their access token. */
  fetchProfile?(accessToken: string, context: UpstreamContext): Promise<UpstreamProfile>;
}

const NAME = /^[a-z][a-z0-9-]{0,31}$/;

function checkName(name: string): string {
  if (!NAME.test(name)) {
    throw new UpstreamConfigError(
      `Invalid upstream name ${JSON.stringify(name)}.`,
      'Use 1-32 lower-case letters, digits or "-", starting with a letter (e.g. "github", "corp-sso").',
    );
  }
  return name;
}

function checkClient(name: string, clientId: string | undefined): string {
  if (!clientId) {
    throw new UpstreamConfigError(
      `The upstream "${name}" has no client ID.`,
      `Register Gatehouse as an OAuth app at the provider and set ${envName(name, 'CLIENT_ID')} (and ${envName(name, 'CLIENT_SECRET')}).`,
    );
  }
  return clientId;
}

function baseUrl(value: string, what: string): string {
  try {
    return assertSecureUrl(value, what).href.replace(/\/+$/, '');
  } catch (cause) {
    throw new UpstreamConfigError((cause as Error).message, 'Use an https URL (http only on loopback, for tests).');
  }
}

const str = (value: unknown): string | undefined => (typeof value === 'string' && value ? value : undefined);

/** Standard OIDC claims → profile. `email_verified` may be a boolean or the string "true" (some IdPs). */
export function standardProfile(claims: Record<string, unknown>): UpstreamProfile {
  const verified = claims['email_verified'];
  return {
    subject: String(claims['sub']),
    email: str(claims['email']),
    emailVerified: verified === true || verified === 'true',
    name: str(claims['name']),
    username: str(claims['preferred_username']),
    picture: str(claims['picture']),
    claims,
  };
}

/** Options of {@link oidcUpstream}. */
export interface OidcUpstreamOptions {
  /** The issuer identifier; discovery is read from `<issuer>/.well-known/openid-configuration`. */
  issuer: string;
  clientId: string;
  clientSecret?: string;
  /** Default `openid email profile`. Add `offline_access` to get refresh tokens from most providers. */
  scopes?: string[];
  /** Default `oidc`. */
  name?: string;
  /** Default: the issuer's host. */
  displayName?: string;
  authorizationParams?: Record<string, string>;
  /** Default `client_secret_basic` (`none` without a secret). */
  tokenEndpointAuthMethod?: UpstreamClientAuth;
  admission?: AdmissionRules;
  /** Claims → profile. Default: the standard claims (`sub`, `email`, `email_verified`, `name`, …). */
  profile?: (claims: Record<string, unknown>) => UpstreamProfile;
}

/**
 * Any OpenID Connect provider, by issuer: discovery, PKCE S256, `state` and `nonce`, ID-token validation (signature
 * through the JWKS, `iss`, `aud`, `exp`, `nonce`), then the userinfo endpoint for the remaining claims.
 *
 * @example
 * ```ts
 * import { oidcUpstream } from 'gatehouse/authorization-server';
 *
 * const corp = oidcUpstream({
 *   name: 'corp',
 *   issuer: 'https://idp.example.com',
 *   clientId: process.env.GATEHOUSE_UPSTREAM_CORP_CLIENT_ID!,
 *   clientSecret: process.env.GATEHOUSE_UPSTREAM_CORP_CLIENT_SECRET,
 *   scopes: ['openid', 'email', 'profile', 'offline_access'],
 * });
 * ```
 */
export function oidcUpstream(options: OidcUpstreamOptions): UpstreamProvider {
  const name = checkName(options.name ?? 'oidc');
  const issuer = baseUrl(options.issuer, 'issuer');
  const clientId = checkClient(name, options.clientId);
  const scopes = [...(options.scopes ?? ['openid', 'email', 'profile'])];
  if (!scopes.includes('openid')) scopes.unshift('openid');
  const authorizationParams: Record<string, string> = { ...options.authorizationParams };
  // OIDC Core §11: offline_access is ignored unless the request asks for consent.
  if (scopes.includes('offline_access') && authorizationParams['prompt'] === undefined)
    authorizationParams['prompt'] = 'consent';
  let discovered: Promise<UpstreamEndpoints> | undefined;
  const displayName = options.displayName ?? new URL(issuer).host;
  return {
    name,
    displayName,
    protocol: 'oidc',
    clientId,
    clientSecret: options.clientSecret,
    scopes,
    authorizationParams,
    tokenEndpointAuthMethod: options.tokenEndpointAuthMethod ?? (options.clientSecret ? 'client_secret_basic' : 'none'),
    admission: options.admission,
    profileFromClaims: options.profile ?? standardProfile,
    endpoints(context) {
      discovered ??= discover(name, displayName, issuer, context).catch((error: unknown) => {
        discovered = undefined; // try again next time
        throw error;
      });
      return discovered;
    },
  };
}

async function discover(
  name: string,
  displayName: string,
  issuer: string,
  context: UpstreamContext,
): Promise<UpstreamEndpoints> {
  const url = `${issuer}/.well-known/openid-configuration`;
  const metadata = await getJson({ upstream: name, displayName, url, ...context });
  const problem = (what: string) =>
    new UpstreamError({
      error: 'temporarily_unavailable',
      reason: 'unavailable',
      description: `${displayName}: ${url} ${what}`,
      userMessage: `Sign-in with ${displayName} is misconfigured. Tell the administrator.`,
      upstream: name,
      status: 503,
    });
  if (!metadata) throw problem('was not found');
  const metaIssuer = str(metadata['issuer']);
  // Entra's multi-tenant endpoints publish a templated issuer; the ID token's tid fills it in.
  const templated = metaIssuer?.includes('{tenantid}') && new URL(metaIssuer.replace('{tenantid}', 't')).origin;
  if (metaIssuer !== issuer && metaIssuer !== `${issuer}/` && templated !== new URL(issuer).origin) {
    throw problem(`names the issuer ${metaIssuer}, not ${issuer}`);
  }
  const endpoint = (key: string, required: boolean): string | undefined => {
    const value = str(metadata[key]);
    if (!value) {
      if (required) throw problem(`has no ${key}`);
      return undefined;
    }
    try {
      return assertSecureUrl(value, key).href;
    } catch {
      throw problem(`has an insecure ${key}`);
    }
  };
  return {
    issuer: metaIssuer!,
    authorizationEndpoint: endpoint('authorization_endpoint', true)!,
    tokenEndpoint: endpoint('token_endpoint', true)!,
    jwksUri: endpoint('jwks_uri', true)!,
    userinfoEndpoint: endpoint('userinfo_endpoint', false),
    revocationEndpoint: endpoint('revocation_endpoint', false),
  };
}

/** Options of {@link githubUpstream}. */
export interface GithubUpstreamOptions {
  clientId: string;
  clientSecret?: string;
  /** Default `read:user user:email`. Add what tools need, e.g. `repo`. */
  scopes?: string[];
  /** Where users sign in. Default `https://github.com` (GitHub Enterprise Server: your host). */
  baseUrl?: string;
  /** The REST API. Default `https://api.github.com` (GitHub Enterprise Server: `https://HOST/api/v3`). */
  apiBaseUrl?: string;
  /** Default `github`. */
  name?: string;
  displayName?: string;
  admission?: AdmissionRules;
}

/**
 * GitHub (an OAuth App or a GitHub App's user tokens): plain OAuth 2.0 with PKCE, `Accept: application/json` on
 * the token endpoint (form-encoded answers are read too), the user from `GET /user` and the verified primary email
 * from `GET /user/emails`. GitHub App user tokens expire and come with refresh tokens; OAuth App tokens do not.
 * The stable subject is the numeric user `id`, never the (renamable) login.
 *
 * @example
 * ```ts
 * import { githubUpstream } from 'gatehouse/authorization-server';
 *
 * const github = githubUpstream({
 *   clientId: process.env.GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID!,
 *   clientSecret: process.env.GATEHOUSE_UPSTREAM_GITHUB_CLIENT_SECRET,
 *   scopes: ['read:user', 'user:email', 'repo'],
 * });
 * ```
 */
export function githubUpstream(options: GithubUpstreamOptions): UpstreamProvider {
  const name = checkName(options.name ?? 'github');
  const clientId = checkClient(name, options.clientId);
  const base = baseUrl(options.baseUrl ?? 'https://github.com', 'baseUrl');
  const api = baseUrl(options.apiBaseUrl ?? 'https://api.github.com', 'apiBaseUrl');
  const displayName = options.displayName ?? 'GitHub';
  const apiHeaders = { 'x-github-api-version': '2022-11-28' };
  return {
    name,
    displayName,
    protocol: 'oauth2',
    clientId,
    clientSecret: options.clientSecret,
    scopes: options.scopes ?? ['read:user', 'user:email'],
    authorizationParams: {},
    tokenEndpointAuthMethod: 'client_secret_post',
    admission: options.admission,
    async endpoints() {
      return {
        authorizationEndpoint: `${base}/login/oauth/authorize`,
        tokenEndpoint: `${base}/login/oauth/access_token`,
      };
    },
    async fetchProfile(accessToken, context) {
      const common = {
        upstream: name,
        displayName,
        accessToken,
        accept: 'application/vnd.github+json',
        headers: apiHeaders,
        ...context,
      };
      const user = await getJson({ ...common, url: `${api}/user` });
      if (!user || (typeof user['id'] !== 'number' && typeof user['id'] !== 'string')) {
        throw new UpstreamError({
          error: 'access_denied',
          reason: 'profile_unavailable',
          description: `${displayName} did not return the user for the new token`,
          userMessage: `${displayName} did not tell us who you are. Try again.`,
          upstream: name,
        });
      }
      // /user/emails needs user:email; without it only the public email (unverified for us) is known.
      const emails = (await getJson({ ...common, url: `${api}/user/emails` })) as unknown;
      let email = str(user['email']);
      let emailVerified = false;
      if (Array.isArray(emails)) {
        const list = emails as Array<{ email?: unknown; primary?: unknown; verified?: unknown }>;
        const primary = list.find((e) => e.primary === true && e.verified === true);
        const sameAsPublic = list.find((e) => e.email === email && e.verified === true);
        const chosen = sameAsPublic ?? primary;
        if (chosen && typeof chosen.email === 'string') {
          email = chosen.email;
          emailVerified = true;
        }
      }
      const claims: Record<string, unknown> = {
        sub: String(user['id']),
        login: user['login'],
        name: user['name'] ?? undefined,
        email,
        email_verified: emailVerified,
        company: user['company'] ?? undefined,
      };
      return {
        subject: String(user['id']),
        email,
        emailVerified,
        name: str(user['name']),
        username: str(user['login']),
        picture: str(user['avatar_url']),
        claims,
      };
    },
  };
}

/** Options of {@link googleUpstream}. */
export interface GoogleUpstreamOptions {
  clientId: string;
  clientSecret?: string;
  /** Default `openid email profile`; add Google API scopes (e.g. `https://www.googleapis.com/auth/drive.readonly`). */
  scopes?: string[];
  /** The issuer. Default `https://accounts.google.com`. */
  baseUrl?: string;
  name?: string;
  displayName?: string;
  admission?: AdmissionRules;
}

/**
 * Google: OIDC at `https://accounts.google.com`, asking for a refresh token (`access_type=offline`,
 * `prompt=consent`). Restrict to a Workspace domain with `admission: { requiredClaims: { hd: 'example.com' } }`.
 *
 * @example
 * ```ts
 * import { googleUpstream } from 'gatehouse/authorization-server';
 *
 * const google = googleUpstream({
 *   clientId: process.env.GATEHOUSE_UPSTREAM_GOOGLE_CLIENT_ID!,
 *   clientSecret: process.env.GATEHOUSE_UPSTREAM_GOOGLE_CLIENT_SECRET,
 *   admission: { requiredClaims: { hd: 'example.com' } },
 * });
 * ```
 */
export function googleUpstream(options: GoogleUpstreamOptions): UpstreamProvider {
  return oidcUpstream({
    name: options.name ?? 'google',
    displayName: options.displayName ?? 'Google',
    issuer: options.baseUrl ?? 'https://accounts.google.com',
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    scopes: options.scopes ?? ['openid', 'email', 'profile'],
    authorizationParams: { access_type: 'offline', prompt: 'consent' },
    admission: options.admission,
  });
}

/** Options of {@link entraUpstream}. */
export interface EntraUpstreamOptions {
  /** A tenant ID or domain, or `organizations` / `common` / `consumers` for multi-tenant apps. */
  tenant: string;
  clientId: string;
  clientSecret?: string;
  /** Default `openid email profile offline_access`; add e.g. `User.Read` for Microsoft Graph. */
  scopes?: string[];
  /** The authority host. Default `https://login.microsoftonline.com` (sovereign clouds: their host). */
  baseUrl?: string;
  name?: string;
  displayName?: string;
  admission?: AdmissionRules;
}

/**
 * Microsoft Entra ID (v2.0 endpoints), tenant-aware: the issuer is `<baseUrl>/<tenant>/v2.0`; with a multi-tenant
 * `tenant` the ID token's issuer must match its own `tid`. Entra's `email` claim is not verified by Entra, so it
 * counts as verified only with `xms_edov: true` (an optional claim) — linking by email is unsafe otherwise.
 * Restrict tenants with `admission: { requiredClaims: { tid: ['<tenant-id>'] } }`.
 *
 * @example
 * ```ts
 * import { entraUpstream } from 'gatehouse/authorization-server';
 *
 * const entra = entraUpstream({
 *   tenant: '72f988bf-86f1-41af-91ab-2d7cd011db47',
 *   clientId: process.env.GATEHOUSE_UPSTREAM_ENTRA_CLIENT_ID!,
 *   clientSecret: process.env.GATEHOUSE_UPSTREAM_ENTRA_CLIENT_SECRET,
 *   scopes: ['openid', 'email', 'profile', 'offline_access', 'User.Read'],
 * });
 * ```
 */
export function entraUpstream(options: EntraUpstreamOptions): UpstreamProvider {
  if (!options.tenant || !/^[A-Za-z0-9.-]+$/.test(options.tenant)) {
    throw new UpstreamConfigError(
      `Invalid Entra tenant ${JSON.stringify(options.tenant)}.`,
      'Give a tenant ID, a verified domain, or organizations/common/consumers.',
    );
  }
  const base = baseUrl(options.baseUrl ?? 'https://login.microsoftonline.com', 'baseUrl');
  return oidcUpstream({
    name: options.name ?? 'entra',
    displayName: options.displayName ?? 'Microsoft',
    issuer: `${base}/${options.tenant}/v2.0`,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    scopes: options.scopes ?? ['openid', 'email', 'profile', 'offline_access'],
    // Entra does not need prompt=consent for offline_access, and asking for it every time annoys users.
    authorizationParams: { prompt: 'select_account' },
    tokenEndpointAuthMethod: 'client_secret_post',
    admission: options.admission,
    profile(claims) {
      const profile = standardProfile(claims);
      profile.emailVerified = claims['xms_edov'] === true || claims['xms_edov'] === 'true';
      profile.email ??= str(claims['upn']) ?? undefined;
      return profile;
    },
  });
}

/** `GATEHOUSE_UPSTREAM_<NAME>_<SUFFIX>`: the name upper-cased, `-` as `_`. */
export function envName(upstream: string, suffix: 'CLIENT_ID' | 'CLIENT_SECRET'): string {
  return `GATEHOUSE_UPSTREAM_${upstream.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${suffix}`;
}

/** Options of {@link parseUpstreamSpec}. */
export interface UpstreamSpecOptions {
  /** Where client IDs and secrets are read. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Secrets from the config file, by upstream name; they win over the environment. */
  secrets?: Record<string, { clientId?: string; clientSecret?: string }>;
  /** Base-URL overrides by upstream name (tests point presets at loopback this way). */
  overrides?: Record<string, { baseUrl?: string; apiBaseUrl?: string; scopes?: string[] }>;
}

/**
 * Parses one `--upstream` value: `github`, `google`, `entra:<tenant>`, `oidc:<issuer>`, each optionally prefixed
 * with a name (`corp=oidc:https://idp.example.com`). The client ID and secret come from `options.secrets`, else
 * from `GATEHOUSE_UPSTREAM_<NAME>_CLIENT_ID` and `GATEHOUSE_UPSTREAM_<NAME>_CLIENT_SECRET`, `<NAME>` being the
 * upstream's name upper-cased with `-` as `_` (`GITHUB`, `GOOGLE`, `ENTRA`, `OIDC`, `CORP`).
 *
 * @example
 * ```ts
 * import { parseUpstreamSpec } from 'gatehouse/authorization-server';
 *
 * // GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID=… GATEHOUSE_UPSTREAM_GITHUB_CLIENT_SECRET=…
 * const github = parseUpstreamSpec('github');
 * // GATEHOUSE_UPSTREAM_CORP_CLIENT_ID=… GATEHOUSE_UPSTREAM_CORP_CLIENT_SECRET=…
 * const corp = parseUpstreamSpec('corp=oidc:https://idp.example.com');
 * ```
 */
export function parseUpstreamSpec(spec: string, options: UpstreamSpecOptions = {}): UpstreamProvider {
  const env = options.env ?? process.env;
  const eq = spec.indexOf('=');
  const colon = spec.indexOf(':');
  const named = eq > 0 && (colon === -1 || eq < colon);
  const rest = named ? spec.slice(eq + 1) : spec;
  const kindEnd = rest.indexOf(':');
  const kind = (kindEnd === -1 ? rest : rest.slice(0, kindEnd)).trim().toLowerCase();
  const argument = kindEnd === -1 ? '' : rest.slice(kindEnd + 1).trim();
  const name = checkName(named ? spec.slice(0, eq).trim() : kind);
  const secret = options.secrets?.[name];
  const clientId = secret?.clientId ?? env[envName(name, 'CLIENT_ID')] ?? '';
  const clientSecret = secret?.clientSecret ?? env[envName(name, 'CLIENT_SECRET')] ?? undefined;
  const override = options.overrides?.[name] ?? {};
  const common = { name, clientId, clientSecret, ...(override.scopes && { scopes: override.scopes }) };
  switch (kind) {
    case 'github':
      return githubUpstream({ ...common, baseUrl: override.baseUrl, apiBaseUrl: override.apiBaseUrl });
    case 'google':
      return googleUpstream({ ...common, baseUrl: override.baseUrl });
    case 'entra':
      if (!argument) throw new UpstreamConfigError('entra needs a tenant: --upstream entra:<tenant>.');
      return entraUpstream({ ...common, tenant: argument, baseUrl: override.baseUrl });
    case 'oidc':
      if (!argument) throw new UpstreamConfigError('oidc needs an issuer: --upstream oidc:https://idp.example.com.');
      return oidcUpstream({ ...common, issuer: override.baseUrl ?? argument });
    default:
      throw new UpstreamConfigError(
        `Unknown upstream ${JSON.stringify(spec)}.`,
        'Use github, google, entra:<tenant> or oidc:<issuer>, optionally as <name>=<kind>.',
      );
  }
}
