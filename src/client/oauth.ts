import { randomBytes } from 'node:crypto';
import {
  AuthorizationServerMismatchError,
  auth,
  computeScopeUnion,
  DpopSession,
  discoverOAuthServerInfo,
  extractWWWAuthenticateParams,
  type FetchLike,
  isStrictScopeSuperset,
  type OAuthClientInformationContext,
  type OAuthClientMetadata,
  type OAuthClientProvider,
  type OAuthDiscoveryState,
  OAuthError,
  RegistrationRejectedError,
  refreshAuthorization,
  registerClient,
  IssuerMismatchError as SdkIssuerMismatchError,
  type StoredOAuthClientInformation,
  type StoredOAuthTokens,
  selectResourceURL,
  withDpopFromProvider,
} from '@modelcontextprotocol/client';
import { constantTimeEqual } from '../oauth/constant-time.js';
import { DEVICE_CODE_GRANT_TYPE } from '../oauth/device.js';
import { protectedResourceMetadataUrls } from '../oauth/discovery.js';
import { GatehouseError } from '../oauth/errors.js';
import { parseWwwAuthenticate } from '../oauth/www-authenticate.js';
import { defaultTokenStore } from '../storage/default.js';
import { LeaseTimeoutError } from '../storage/errors.js';
import { memoryStore } from '../storage/memory.js';
import {
  canonicalServer,
  isAccessTokenExpired,
  type StoredClientInformation,
  type StoredTokens,
  type TokenRecord,
  type TokenResponse,
  TokenStorage,
} from '../storage/tokens.js';
import { leasesOf, type StoreInput } from '../storage/types.js';
import { assertOpenableUrl, canOpenBrowser, openBrowser as defaultOpenBrowser } from './browser.js';
import { type CallbackServer, startCallbackServer } from './callback-server.js';
import { withCredentialLock, withStoreLease } from './credential-lock.js';
import { type DeviceCodeHandler, deviceLogin, printDeviceCode } from './device-login.js';
import { explainLoginFailure } from './doctor.js';
import {
  AuthenticationError,
  AuthorizationDeniedError,
  CallbackTimeoutError,
  DeviceFlowUnsupportedError,
  DiscoveryError,
  IssuerMismatchError,
  RefreshFailedError,
  RegistrationError,
} from './errors.js';
import { retryingFetch } from './fetch-retry.js';
import { headlessAuthorize, type LoginCredentials } from './headless-login.js';
import { clientFetch } from './network.js';

/** What the OAuth flow is doing, for progress output. `http` events carry every request the flow makes. */
export type OAuthEvent =
  | { type: 'http'; method: string; url: string; status: number }
  | { type: 'authorization-redirect'; url: string }
  | { type: 'refreshed' }
  | { type: 'refresh-failed'; error: unknown }
  | { type: 'authorized' };

/** Options of {@link OAuth}. Every option is optional; `new OAuth({ mcpUrl })` is a complete browser login. */
export interface OAuthOptions {
  /** The MCP server URL. Optional when the `OAuth` is handed to a client that knows it. */
  mcpUrl?: string;
  /** The name shown on the consent page. Default `Gatehouse`. */
  clientName?: string;
  /** Scopes to request, space-separated or as a list. Default: the server's challenge, else its `scopes_supported`. */
  scopes?: string | string[];
  /** A fixed loopback port for the redirect URI. Default: the port of a cached registration, else a random one. */
  callbackPort?: number;
  /**
   * Where tokens and registrations live: any Keyv instance, Keyv store adapter, `Map`, Gatehouse store (e.g.
   * `fileStore()` from `gatehouse/storage`) or a `TokenStorage`; `'memory'` keeps them in this process only.
   * Default: the store the `gatehouse` CLI uses (`defaultTokenStore()`: encrypted files, the key in the OS keychain
   * or a 0600 key file), so a `gatehouse login` is reused here and the other way round.
   */
  tokenStorage?: StoreInput | TokenStorage | 'memory';
  /** A pre-registered client ID: skips registration. */
  clientId?: string;
  /** The pre-registered client's secret, for confidential clients. */
  clientSecret?: string;
  /** An `https:` URL of this client's metadata document (CIMD), used when the authorization server supports it. */
  clientMetadataUrl?: string;
  /** Extra fields for dynamic registration (e.g. `logo_uri`, `contacts`). */
  additionalClientMetadata?: Partial<OAuthClientMetadata>;
  /** `false` prints the URL instead of opening a browser; a function opens it your way. Default `true`. */
  openBrowser?: boolean | ((authorizationUrl: URL) => void | Promise<void>);
  /** Called with the authorization URL instead of opening a browser; the callback server still waits. */
  redirectHandler?: (authorizationUrl: URL) => void | Promise<void>;
  /** Log in by posting the authorization server's login form with these credentials: no browser needed. */
  login?: LoginCredentials;
  /**
   * Paste-back login for machines without a browser or a reachable loopback (SSH, containers): prints the
   * authorization URL and reads the final redirect URL (copied from the browser's address bar, where the page
   * failed to load) from stdin. `true` uses `process.stdin` / `process.stderr`; pass streams to read elsewhere.
   * No callback server is started.
   */
  pasteBack?: boolean | { input?: NodeJS.ReadableStream; output?: NodeJS.WritableStream };
  /**
   * The device authorization grant (RFC 8628), for machines where no browser can be opened: the user enters a
   * short code on a page of the authorization server, from any device. `true` always logs in this way (throwing
   * {@link DeviceFlowUnsupportedError} when the authorization server does not offer it); `false` never does;
   * `'auto'` does when the authorization server offers it and no browser can be opened here (an SSH session, no
   * `DISPLAY`/`WAYLAND_DISPLAY` on Linux, or the opener failed; see {@link canOpenBrowser}). Default: `'auto'`
   * when this `OAuth` would open the system browser itself (no `login`, `pasteBack`, `redirectHandler` or
   * `openBrowser` function), else `false`.
   */
  device?: boolean | 'auto';
  /** Shows the device login's address and code to the user. Default: prints them to stderr. */
  onDeviceCode?: DeviceCodeHandler;
  /**
   * The `resource` parameter (RFC 8707) sent at `/authorize` and the token endpoint. Default: the MCP server's
   * protected-resource metadata `resource`. A string overrides it; `false` omits it, for authorization servers
   * that refuse it (Microsoft Entra ID answers `AADSTS9010010`).
   */
  resource?: string | false;
  /** How long to wait for the browser login. Default 300 000 ms. */
  timeoutMs?: number;
  /** Refresh this many seconds before the access token expires. Default 60. */
  refreshSkewSeconds?: number;
  /** How many `403 insufficient_scope` step-ups one request may trigger. Default 2. */
  maxStepUps?: number;
  /** Sender-constrain tokens with DPoP (RFC 9449): `true` for a fresh key, or your own session. */
  dpop?: boolean | DpopSession;
  /** `fetch` used for every OAuth request. Default: {@link clientFetch} (proxy variables and extra CAs honoured). */
  fetch?: typeof fetch;
  /** Receives progress events. */
  onEvent?: (event: OAuthEvent) => void;
  /** Directory of the cross-process lock files. Default `<tmpdir>/gatehouse-locks`. */
  lockDirectory?: string;
  /**
   * With a store that holds leases (Redis, PostgreSQL: shared by several machines), how long the lease taken
   * around each token refresh lasts: the longest a refresh may take, and the longest a process that died while
   * refreshing blocks the others. Default 30 000 ms.
   */
  refreshLeaseMs?: number;
  /** Clock in milliseconds, for tests. Give the same one to the `TokenStorage`. */
  now?: () => number;
}

/** Hooks of {@link OAuth.wrapFetch}. */
export interface WrapFetchHooks {
  /**
   * Called with `true` when a request starts authorizing (a refresh or a login, bounded by `timeoutMs`) and with
   * `false` when that ends: a caller timing the request itself (e.g. the MCP handshake) leaves that time out.
   */
  onAuthorizing?: (authorizing: boolean) => void;
}

/**
 * What {@link OAuth.authorize} did: kept the `stored` tokens (valid, or just stored by another process that held
 * the lock), `refreshed` them, or `logged-in` anew.
 */
export type AuthorizeOutcome = 'stored' | 'refreshed' | 'logged-in';

/** Options of {@link OAuth.authorize}. */
export interface AuthorizeOptions {
  /** The MCP server; default `mcpUrl`. */
  serverUrl?: string;
  /** The `resource_metadata` URL from a `WWW-Authenticate` challenge. */
  resourceMetadataUrl?: URL;
  /** Scope to request (a challenge's scope, or a union for step-up). */
  scope?: string;
  /** The access token the server just rejected: it will not be reused. */
  rejectedToken?: string;
  /** Skip the refresh token and log in again (step-up to a wider scope). */
  forceReauthorization?: boolean;
  /**
   * Ask for a login no older than this many seconds (`max_age` on the authorization request, RFC 9470); implies
   * `forceReauthorization`.
   */
  maxAge?: number;
  /** Ask for one of these authentication context classes (`acr_values`, RFC 9470); implies `forceReauthorization`. */
  acrValues?: string[];
}

type Discovery = OAuthDiscoveryState;

/**
 * MCP: a client must see `S256` in `code_challenge_methods_supported` (an absent list included) before it goes on.
 * Checked before registration, so a refused server is left no orphan client. Without any metadata (the 2025-03-26
 * fallback endpoints) there is nothing to check, and the authorization request itself carries S256.
 */
function assertPkceS256(discovery: Discovery): void {
  const metadata = discovery.authorizationServerMetadata;
  if (!metadata) return;
  const methods = metadata.code_challenge_methods_supported;
  if (methods?.includes('S256')) return;
  const issuer = metadata.issuer ?? String(discovery.authorizationServerUrl);
  throw new DiscoveryError(
    `The authorization server ${issuer} does not support PKCE S256: code_challenge_methods_supported ${
      methods ? `lists only ${methods.join(', ') || '(nothing)'}` : 'is missing from its metadata'
    }`,
    {
      code: 'ERR_PKCE_UNSUPPORTED',
      hint: 'MCP requires PKCE with S256; ask the operator to advertise "code_challenge_methods_supported": ["S256"].',
    },
  );
}

/** Thrown out of the browser step when the browser failed to open and a device login can take over. */
class BrowserUnavailable extends Error {}

const offersDeviceFlow = (discovery: Discovery | undefined): boolean =>
  typeof (discovery?.authorizationServerMetadata as { device_authorization_endpoint?: unknown } | undefined)
    ?.device_authorization_endpoint === 'string';
type ServerRecord = TokenRecord & { discovery?: Discovery };

function scopeString(scopes: string | string[] | undefined): string | undefined {
  const text = Array.isArray(scopes) ? scopes.join(' ') : scopes;
  return text?.trim() ? text.trim() : undefined;
}

function portOf(uri: string | undefined): number | undefined {
  if (!uri) return undefined;
  try {
    const url = new URL(uri);
    return url.port ? Number(url.port) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A form-encoded token response (GitHub's answer when not asked for JSON, and some servers' answer regardless)
 * as the JSON one the SDK parses. Other responses pass through unchanged.
 */
export async function jsonTokenResponse(response: Response): Promise<Response> {
  const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded' && type !== 'text/plain') return response;
  const text = await response.text();
  const params = new URLSearchParams(text.trim());
  if (!params.has('access_token') && !params.has('error')) {
    return new Response(text, { status: response.status, statusText: response.statusText, headers: response.headers });
  }
  const body: Record<string, string | number> = {};
  for (const [name, value] of params) body[name] = value;
  if (typeof body['expires_in'] === 'string' && /^\d+$/.test(body['expires_in'])) {
    body['expires_in'] = Number(body['expires_in']);
  }
  const headers = new Headers(response.headers);
  headers.set('content-type', 'application/json');
  headers.delete('content-length');
  return new Response(JSON.stringify(body), { status: response.status, statusText: response.statusText, headers });
}

/** Reads lines from `input` until one is a redirect URL carrying `code` or `error`. */
function readPastedRedirect(input: NodeJS.ReadableStream, timeoutMs: number): Promise<URL> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const done = (fn: () => void) => {
      clearTimeout(timer);
      input.off('data', onData);
      input.off('end', onEnd);
      (input as { pause?: () => void }).pause?.();
      fn();
    };
    const onData = (chunk: Buffer | string) => {
      buffer += String(chunk);
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf('\n');
        try {
          const url = new URL(line);
          if (url.searchParams.has('code') || url.searchParams.has('error')) return done(() => resolve(url));
        } catch {
          // Not a URL: keep reading.
        }
      }
    };
    const onEnd = () =>
      done(() =>
        reject(
          new AuthenticationError('No redirect URL was pasted', {
            code: 'ERR_NO_CALLBACK',
            hint: 'Paste the full URL from the address bar of the page the login ended on.',
          }),
        ),
      );
    const timer = setTimeout(() => done(() => reject(new CallbackTimeoutError(timeoutMs))), timeoutMs);
    timer.unref?.();
    input.on('data', onData);
    input.on('end', onEnd);
    (input as { resume?: () => void }).resume?.();
  });
}

/**
 * The `max_age` / `acr_values` of a 401 `insufficient_user_authentication` challenge (RFC 9470 §3), on the Bearer
 * or the DPoP challenge; `undefined` for any other response.
 */
function userAuthenticationChallenge(response: Response): { maxAge?: number; acrValues?: string[] } | undefined {
  const challenge = parseWwwAuthenticate(response.headers.get('www-authenticate')).find(
    (c) => c.params['error'] === 'insufficient_user_authentication',
  );
  if (!challenge) return undefined;
  const maxAge = Number(challenge.params['max_age']);
  const acrValues = (challenge.params['acr_values'] ?? '').split(' ').filter(Boolean);
  return {
    ...(challenge.params['max_age'] !== undefined && Number.isInteger(maxAge) && maxAge >= 0 && { maxAge }),
    ...(acrValues.length > 0 && { acrValues }),
  };
}

/** `: invalid_token (the description)` from an OAuth error body, or the start of any other body. */
function oauthErrorText(body: string): string {
  try {
    const { error, error_description } = JSON.parse(body) as { error?: unknown; error_description?: unknown };
    if (typeof error === 'string')
      return `: ${error}${typeof error_description === 'string' ? ` (${error_description})` : ''}`;
  } catch {
    // not JSON
  }
  const text = body.replace(/\s+/g, ' ').trim().slice(0, 120);
  return text ? `: ${text}` : '';
}

/**
 * Whether a failed login may be explained by the server's discovery (see explainLoginFailure): what the flow
 * itself cannot name — a refused registration, a metadata or target error, a reply that is not what OAuth expects.
 * A user's refusal, a timeout, a wrong password, an unreachable host are their own cause.
 */
function worthDiagnosing(error: unknown): boolean {
  if (error instanceof AuthorizationDeniedError) return error.error !== 'access_denied';
  if (error instanceof DiscoveryError) return error.code !== 'ERR_PKCE_UNSUPPORTED'; // the cause is known
  if (error instanceof RegistrationError) return true;
  if (error instanceof GatehouseError) return false;
  return true;
}

/** Turns the SDK's errors into our typed ones, each saying what to do. */
function translate(error: unknown): unknown {
  if (error instanceof AuthenticationError) return error;
  if (error instanceof SdkIssuerMismatchError)
    return new IssuerMismatchError(error.expected ?? '(unknown)', error.received);
  if (error instanceof AuthorizationServerMismatchError) {
    return new IssuerMismatchError(error.recordedIssuer, error.currentIssuer);
  }
  if (error instanceof RegistrationRejectedError) {
    return new RegistrationError(
      `The authorization server refused the dynamic client registration (HTTP ${error.status}${oauthErrorText(error.body)})`,
      {
        hint: 'Use a client registered by its operator: pass clientId (and clientSecret; gatehouse: --client-id or --client-info), or ask the operator to allow dynamic registration.',
        cause: error,
      },
    );
  }
  if (error instanceof OAuthError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/does not support (the )?(code challenge|S256)|code_challenge/i.test(message)) {
    return new DiscoveryError(`The authorization server does not support PKCE S256: ${message}`, {
      hint: 'MCP requires PKCE with S256; ask the operator to enable it.',
      cause: error,
    });
  }
  if (/Protected resource .* does not match/i.test(message)) {
    return new DiscoveryError(message, {
      hint: "The server's protected-resource metadata names another resource; check the MCP URL you connect to.",
      cause: error,
    });
  }
  if (/metadata|discovery|well-known/i.test(message)) {
    return new DiscoveryError(message, {
      hint: 'Check the MCP URL and that the server publishes its metadata.',
      cause: error,
    });
  }
  if (/registration/i.test(message)) {
    return new RegistrationError(message, { hint: 'Pre-register a client and pass clientId.', cause: error });
  }
  return error;
}

/**
 * OAuth 2.1 login for MCP servers, as an `OAuthClientProvider` of the official SDK. The SDK's `auth()` does
 * discovery, registration (pre-registered → client metadata document → dynamic), PKCE S256, `resource` and the
 * RFC 9207 `iss` check; `OAuth` adds what a real client needs around it:
 *
 * - tokens in any Keyv-compatible store, with an absolute `expires_at`, refreshed *before* they expire — once per
 *   credential, however many requests and processes want it at the same moment;
 * - the login: a loopback callback server and the system browser, a `redirectHandler` hook, or a headless login
 *   form post (`login`);
 * - {@link OAuth.wrapFetch}: a `fetch` that adds the token and handles `401` and `403 insufficient_scope`.
 *
 * @example
 * ```ts
 * import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
 * import { OAuth } from 'gatehouse/client';
 * import { fileStore } from 'gatehouse/storage';
 *
 * const mcpUrl = 'https://mcp.example.com/mcp';
 * const oauth = new OAuth({ mcpUrl, clientName: 'My app', tokenStorage: fileStore() });
 * const client = new Client({ name: 'my-app', version: '1.0.0' });
 * await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch: oauth.wrapFetch() }));
 * ```
 */
export class OAuth implements OAuthClientProvider {
  readonly options: OAuthOptions;
  readonly storage: TokenStorage;
  private readonly fetchFn: typeof fetch;
  /**
   * The protected-resource metadata that {@link resourceMetadataUrl} just fetched to see that it answers, handed to
   * the SDK's discovery when it asks for the same URL next instead of fetching it a second time.
   */
  private probedResourceMetadata: { url: string; status: number; headers: Headers; body: string } | undefined;
  private record: ServerRecord | undefined;
  private loaded = false;
  private verifier: string | undefined;
  private expectedState: string | undefined;
  private callbackUrl: URL | undefined;
  private server: CallbackServer | undefined;
  private guessedPort: number | undefined;
  private refreshing: Promise<void> | undefined;
  private authorizing: Promise<AuthorizeOutcome> | undefined;
  private insideLock = false;
  private inFlow = false;
  private clientDropped = false;
  private lastTokensForAuth: StoredTokens | undefined;
  private requestedScope: string | undefined;
  /** `max_age` / `acr_values` for the login under way, from an `insufficient_user_authentication` challenge. */
  private stepUp: { maxAge?: number; acrValues?: string[] } | undefined;
  private dpopSession: Promise<DpopSession> | undefined;
  /** The credentials of other servers this `OAuth` was shared with (see forServer), by canonical URL. */
  private readonly servers = new Map<string, OAuth>();

  constructor(options: OAuthOptions = {}) {
    this.options = options;
    if (options.clientMetadataUrl !== undefined) this.clientMetadataUrl = options.clientMetadataUrl;
    const given = options.tokenStorage;
    this.storage =
      given instanceof TokenStorage
        ? given
        : new TokenStorage(given === 'memory' ? memoryStore() : (given ?? defaultTokenStore()));
    const base = retryingFetch(options.fetch ?? clientFetch);
    this.fetchFn = async (input, init) => {
      const method = (init?.method ?? 'GET').toUpperCase();
      const probed = this.probedResourceMetadata;
      this.probedResourceMetadata = undefined;
      const url = input instanceof Request ? input.url : String(input);
      if (probed && method === 'GET' && probed.url === url) {
        return new Response(probed.body, { status: probed.status, headers: probed.headers });
      }
      let sent = init;
      if (method === 'POST') {
        // Token endpoints such as GitHub's answer form-encoded unless asked for JSON.
        const headers = new Headers(init?.headers);
        if (!headers.has('accept')) headers.set('accept', 'application/json');
        sent = { ...init, headers };
      }
      const response = await jsonTokenResponse(await base(input, sent));
      options.onEvent?.({ type: 'http', method, url, status: response.status });
      return response;
    };
    if (options.resource !== undefined) {
      this.validateResourceURL = async () =>
        options.resource === false ? undefined : new URL(options.resource as string);
    }
    if (options.dpop instanceof DpopSession) this.dpopSession = Promise.resolve(options.dpop);
    else if (options.dpop) this.dpop = () => (this.dpopSession ??= DpopSession.create());
    if (options.dpop instanceof DpopSession) this.dpop = () => this.dpopSession;
  }

  /** Implements `OAuthClientProvider.validateResourceURL()` when the `resource` option is set. */
  validateResourceURL?: (serverUrl: string | URL, resource?: string) => Promise<URL | undefined>;

  /** Implements `OAuthClientProvider.dpop()` when the `dpop` option is set. */
  dpop?: () => Promise<DpopSession> | undefined;

  /** Implements `OAuthClientProvider.clientMetadataUrl` when the option is set (absent, not undefined, otherwise). */
  readonly clientMetadataUrl?: string;

  private get serverKey(): string {
    if (!this.options.mcpUrl) throw new TypeError('OAuth needs the MCP server URL: pass mcpUrl');
    return this.options.mcpUrl;
  }

  /** The port the redirect URI uses: fixed, else the running server's, else the cached registration's. */
  private get port(): number {
    if (this.options.callbackPort) return this.options.callbackPort;
    if (this.server) return this.server.port;
    const registered = portOf(
      this.record?.client?.['redirect_uris'] ? (this.record.client['redirect_uris'] as string[])[0] : undefined,
    );
    if (registered) return registered;
    this.guessedPort ??= 49152 + Math.floor(Math.random() * 16000);
    return this.guessedPort;
  }

  get redirectUrl(): string {
    return `http://localhost:${this.port}/callback`;
  }

  get clientMetadata(): OAuthClientMetadata {
    const scope = scopeString(this.options.scopes);
    return {
      client_name: this.options.clientName ?? 'Gatehouse',
      redirect_uris: [this.redirectUrl],
      // The device grant is registered only where it will be used, and the authorization server offers it.
      grant_types:
        this.deviceMode !== 'never' && offersDeviceFlow(this.record?.discovery)
          ? ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT_TYPE]
          : ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: this.options.clientSecret ? 'client_secret_basic' : 'none',
      application_type: 'native',
      ...(scope ? { scope } : {}),
      ...this.options.additionalClientMetadata,
    };
  }

  /** When a login uses the device grant: `always`, `auto` (no browser here and the server offers it), `never`. */
  private get deviceMode(): 'always' | 'auto' | 'never' {
    const { device, login, pasteBack, redirectHandler, openBrowser } = this.options;
    if (device === true) return 'always';
    if (device === 'auto') return 'auto';
    if (device === false) return 'never';
    const systemBrowser = !login && !pasteBack && !redirectHandler && (openBrowser ?? true) === true;
    return systemBrowser ? 'auto' : 'never';
  }

  state(): string {
    this.expectedState = randomBytes(32).toString('base64url');
    return this.expectedState;
  }

  /** Reads the server's record from storage (once, or again with `fresh`). */
  private async load(fresh = false): Promise<ServerRecord | undefined> {
    if (!this.loaded || fresh) {
      this.record = (await this.storage.read(this.serverKey)) as ServerRecord | undefined;
      this.loaded = true;
    }
    return this.record;
  }

  private async updateRecord(fn: (current: ServerRecord | undefined) => ServerRecord | undefined): Promise<void> {
    this.record = (await this.storage.update(this.serverKey, (current) => fn(current as ServerRecord | undefined))) as
      | ServerRecord
      | undefined;
    this.loaded = true;
  }

  async clientInformation(ctx?: OAuthClientInformationContext): Promise<StoredOAuthClientInformation | undefined> {
    const record = await this.load();
    const stored = record?.client as StoredOAuthClientInformation | undefined;
    if (this.options.clientId) {
      // Pre-registered credentials win; keep the issuer stamp the SDK gave them on first use.
      const stamp = stored?.client_id === this.options.clientId ? stored.issuer : undefined;
      return {
        client_id: this.options.clientId,
        ...(this.options.clientSecret ? { client_secret: this.options.clientSecret } : {}),
        ...(stamp ? { issuer: stamp } : {}),
      };
    }
    if (stored && ctx?.issuer && stored.issuer && stored.issuer !== ctx.issuer) return undefined;
    return stored;
  }

  async saveClientInformation(info: StoredOAuthClientInformation): Promise<void> {
    await this.updateRecord((current) => ({
      ...(current ?? ({} as ServerRecord)),
      client: { ...(info as StoredClientInformation) },
    }));
  }

  /**
   * The stored tokens. Called without `ctx` before every request (by the SDK transports and {@link wrapFetch}):
   * then a token within `refreshSkewSeconds` of expiry is refreshed first, once for all concurrent callers.
   */
  async tokens(ctx?: OAuthClientInformationContext): Promise<StoredOAuthTokens | undefined> {
    await this.load();
    let tokens = this.record?.tokens;
    if (!ctx && tokens?.refresh_token && this.needsRefresh(tokens) && !this.insideLock && !this.inFlow) {
      try {
        await this.refresh();
      } catch (error) {
        // Keep the old token: the server's 401 then starts a login (wrapFetch) instead of failing here.
        this.options.onEvent?.({ type: 'refresh-failed', error });
      }
      tokens = this.record?.tokens;
    }
    if (ctx) this.lastTokensForAuth = tokens;
    return tokens ? this.toSdkTokens(tokens) : undefined;
  }

  private toSdkTokens(tokens: StoredTokens): StoredOAuthTokens {
    const { expires_at, refresh_token_expires_at: _, ...rest } = tokens;
    const sdk = { ...rest } as StoredOAuthTokens;
    const now = Math.floor((this.options.now ?? Date.now)() / 1000);
    if (expires_at !== undefined) sdk.expires_in = Math.max(0, expires_at - now);
    return sdk;
  }

  private needsRefresh(tokens: StoredTokens): boolean {
    return isAccessTokenExpired(tokens, {
      skewSeconds: this.options.refreshSkewSeconds ?? 60,
      now: (this.options.now ?? Date.now)(),
    });
  }

  async saveTokens(tokens: StoredOAuthTokens): Promise<void> {
    await this.storage.saveTokens(this.serverKey, tokens as unknown as TokenResponse);
    await this.load(true);
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.verifier = codeVerifier;
  }

  codeVerifier(): string {
    if (!this.verifier)
      throw new AuthenticationError('No PKCE code verifier was saved for this login', { code: 'ERR_NO_VERIFIER' });
    return this.verifier;
  }

  async saveDiscoveryState(state: OAuthDiscoveryState): Promise<void> {
    // The SDK's own flow (`authProvider: oauth`) saves what it discovered before it asks for client information and
    // registers: refusing here leaves a server without S256 no orphan registration on that path too.
    assertPkceS256(state);
    await this.updateRecord((current) => ({ ...(current ?? ({} as ServerRecord)), discovery: state }));
  }

  async discoveryState(): Promise<OAuthDiscoveryState | undefined> {
    return (await this.load())?.discovery;
  }

  /**
   * Called by the SDK when the server said credentials are no longer valid. Tokens are deleted only if they are
   * still the ones that failed: another process may have replaced them meanwhile.
   */
  async invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): Promise<void> {
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
    if (scope === 'all' || scope === 'client') this.clientDropped = true;
    const failed = this.lastTokensForAuth;
    await this.updateRecord((current) => {
      if (!current) return undefined;
      const next: ServerRecord = { ...current };
      if (scope === 'all' || scope === 'client') next.client = undefined;
      if (scope === 'all' || scope === 'discovery') next.discovery = undefined;
      if (scope === 'all' || (scope === 'tokens' && (!failed || next.tokens?.refresh_token === failed.refresh_token)))
        next.tokens = undefined;
      return next.client || next.tokens || next.discovery ? next : undefined;
    });
  }

  /**
   * Deletes what is stored for the MCP server (tokens, registration, discovery), or with `'all'` everything in
   * the token storage's store.
   *
   * @example
   * ```ts
   * await oauth.clearCredentials(); // this server
   * await oauth.clearCredentials('all'); // every server in the store
   * ```
   */
  async clearCredentials(which: 'server' | 'all' = 'server'): Promise<void> {
    if (which === 'all') await this.storage.store.clear?.();
    else await this.storage.delete(this.serverKey);
    this.record = undefined;
    this.loaded = true;
  }

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    if (this.stepUp?.maxAge !== undefined) authorizationUrl.searchParams.set('max_age', String(this.stepUp.maxAge));
    if (this.stepUp?.acrValues?.length)
      authorizationUrl.searchParams.set('acr_values', this.stepUp.acrValues.join(' '));
    this.options.onEvent?.({ type: 'authorization-redirect', url: authorizationUrl.href });
    if (this.options.login) {
      this.callbackUrl = await headlessAuthorize(authorizationUrl, this.redirectUrl, this.options.login, this.fetchFn);
    } else if (this.options.pasteBack) {
      const streams = this.options.pasteBack === true ? {} : this.options.pasteBack;
      const output = streams.output ?? process.stderr;
      output.write(
        `Open this URL in a browser on any machine and log in:\n${authorizationUrl.href}\n` +
          "The browser then fails to load a localhost page: paste that page's full URL here and press Enter.\n",
      );
      this.callbackUrl = await readPastedRedirect(streams.input ?? process.stdin, this.options.timeoutMs ?? 300_000);
    } else {
      // Refuse an unsafe URL before listening on anything (the default opener would refuse it anyway).
      if (!this.options.redirectHandler && (this.options.openBrowser ?? true) === true)
        assertOpenableUrl(authorizationUrl);
      const ownServer = !this.server;
      const server = this.server ?? (await startCallbackServer({ port: this.port }));
      this.server = server;
      try {
        const state = authorizationUrl.searchParams.get('state') ?? this.expectedState ?? '';
        const waiting = server.waitForCallback(state, this.options.timeoutMs ?? 300_000);
        waiting.catch(() => {});
        await this.present(authorizationUrl);
        const result = await waiting;
        this.callbackUrl = result.url;
      } finally {
        if (ownServer) {
          this.server = undefined;
          await server.close();
        }
      }
    }
    // Called by an SDK transport (not by authorize()): finish the login here, so a retry finds the tokens.
    if (!this.inFlow && this.options.mcpUrl) await this.finishAuthorization({ serverUrl: this.options.mcpUrl });
  }

  private async present(url: URL): Promise<void> {
    const open = this.options.openBrowser ?? true;
    const tell = () => {
      process.stderr.write(`Open this URL to log in:\n${url.href}\n`);
    };
    try {
      if (this.options.redirectHandler) return await this.options.redirectHandler(url);
      if (open === false) return tell();
      if (typeof open === 'function') await open(url);
      else await defaultOpenBrowser(url);
    } catch (error) {
      const code = error instanceof AuthenticationError ? error.code : undefined;
      // A redirectHandler's own failures are its answer; only a browser that did not open is handled here.
      if (code === 'ERR_UNSAFE_URL' || (this.options.redirectHandler && code !== 'ERR_BROWSER')) throw error;
      // The opener failed: inside a login, a device login takes over where the server offers one.
      if (this.inFlow && this.deviceMode !== 'never' && offersDeviceFlow(this.record?.discovery)) {
        throw new BrowserUnavailable('the browser could not be opened', { cause: error });
      }
      tell();
    }
  }

  /** Exchanges the code of the callback that arrived, after checking `state`. */
  private async finishAuthorization(options: AuthorizeOptions): Promise<void> {
    const callback = this.callbackUrl;
    this.callbackUrl = undefined;
    if (!callback) throw new AuthenticationError('The login did not return to the client', { code: 'ERR_NO_CALLBACK' });
    const params = callback.searchParams;
    const state = params.get('state');
    if (!this.expectedState || !state || !constantTimeEqual(state, this.expectedState)) {
      throw new AuthenticationError('The authorization response has the wrong state', {
        code: 'ERR_STATE_MISMATCH',
        hint: 'Start the login again; if it repeats, something is tampering with the redirect.',
      });
    }
    this.expectedState = undefined;
    const error = params.get('error');
    if (error) throw new AuthorizationDeniedError(error, params.get('error_description') ?? undefined);
    const code = params.get('code');
    if (!code) throw new AuthenticationError('The authorization response carries no code', { code: 'ERR_NO_CODE' });
    const wasInFlow = this.inFlow;
    this.inFlow = true;
    try {
      await auth(this, {
        serverUrl: options.serverUrl ?? this.serverKey,
        resourceMetadataUrl: options.resourceMetadataUrl,
        authorizationCode: code,
        iss: params.get('iss') ?? undefined,
        fetchFn: this.fetchFn,
      });
    } finally {
      this.inFlow = wasInFlow;
    }
  }

  /**
   * Makes sure there is a usable token: keeps a valid stored one, refreshes, or logs in (discovery, registration,
   * browser or headless login, code exchange). Concurrent calls share one run; across processes one run per server
   * holds the lock and the others then reuse its tokens. Resolves to what this run did (decided under the lock, so
   * a process that waited for another's login gets `stored`).
   *
   * @example
   * ```ts
   * const oauth = new OAuth({ mcpUrl: 'http://127.0.0.1:8000/mcp', login: { username: 'demo', password: 'demo' } });
   * const outcome = await oauth.authorize(); // 'logged-in' the first time, then 'stored' or 'refreshed'
   * const tokens = await oauth.tokens();
   * ```
   */
  authorize(options: AuthorizeOptions = {}): Promise<AuthorizeOutcome> {
    this.authorizing ??= this.runAuthorize(options).finally(() => {
      this.authorizing = undefined;
    });
    return this.authorizing;
  }

  private async runAuthorize(options: AuthorizeOptions): Promise<AuthorizeOutcome> {
    const serverUrl = options.serverUrl ?? this.serverKey;
    const outcome = await this.locked(async (): Promise<AuthorizeOutcome> => {
      if (options.rejectedToken) {
        // The server refused a token: its authorization server may have changed (SEP-2352), so discover again.
        await this.forgetDiscovery();
      }
      const record = await this.load(true);
      const tokens = record?.tokens;
      const stepUp = options.maxAge !== undefined || (options.acrValues?.length ?? 0) > 0;
      const scopeCovered = !options.forceReauthorization && !stepUp;
      if (tokens && scopeCovered && tokens.access_token !== options.rejectedToken && !this.needsRefresh(tokens)) {
        return 'stored'; // Valid tokens: ours from before, or another process just logged in or refreshed.
      }
      if (tokens?.refresh_token && scopeCovered) {
        try {
          await this.refreshShared(serverUrl, options.resourceMetadataUrl);
          return 'refreshed';
        } catch (error) {
          if (!(error instanceof RefreshFailedError)) throw error;
          this.options.onEvent?.({ type: 'refresh-failed', error });
        }
      }
      await this.login({ ...options, serverUrl });
      return 'logged-in';
    });
    this.options.onEvent?.({ type: 'authorized' });
    return outcome;
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    return withCredentialLock(
      this.storage.keyFor(this.serverKey),
      async () => {
        this.insideLock = true;
        try {
          return await fn();
        } finally {
          this.insideLock = false;
        }
      },
      { directory: this.options.lockDirectory, waitMs: (this.options.timeoutMs ?? 300_000) + 60_000 },
    );
  }

  /**
   * Logs in; when the authorization server no longer knows the cached registration (`invalid_client` at the
   * token endpoint, or an unknown client at `/authorize`), forgets it and registers again — once.
   */
  private async login(options: AuthorizeOptions & { serverUrl: string }): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      this.clientDropped = false;
      const client = this.record?.client?.client_id;
      try {
        await this.loginOnce(options);
        return;
      } catch (error) {
        const rejected =
          this.clientDropped ||
          (error instanceof OAuthError && (error.code === 'invalid_client' || error.code === 'unauthorized_client')) ||
          (error instanceof AuthenticationError &&
            error.code === 'ERR_LOGIN_FAILED' &&
            /invalid_client|client is invalid|unknown client/i.test(error.message));
        if (attempt > 0 || !rejected || this.options.clientId) throw error;
        await this.updateRecord((current) =>
          current?.client && (!client || current.client.client_id === client)
            ? { ...current, client: undefined }
            : current,
        );
      }
    }
  }

  private async loginOnce(given: AuthorizeOptions & { serverUrl: string }): Promise<void> {
    const scope = computeScopeUnion(scopeString(this.options.scopes), given.scope);
    this.inFlow = true;
    this.stepUp =
      given.maxAge !== undefined || given.acrValues?.length
        ? { maxAge: given.maxAge, acrValues: given.acrValues }
        : undefined;
    try {
      const options = { ...given, resourceMetadataUrl: await this.resourceMetadataUrl(given) };
      const mode = this.deviceMode;
      if (mode !== 'never') {
        const discovery = await this.currentDiscovery(options.serverUrl, options.resourceMetadataUrl);
        if (mode === 'always' && !offersDeviceFlow(discovery)) {
          throw new DeviceFlowUnsupportedError(
            discovery.authorizationServerMetadata?.issuer ?? discovery.authorizationServerUrl,
          );
        }
        if (mode === 'always' || (offersDeviceFlow(discovery) && !canOpenBrowser())) {
          return await this.loginWithDevice(options.serverUrl, discovery, scope);
        }
      }
      try {
        assertPkceS256(await this.currentDiscovery(options.serverUrl, options.resourceMetadataUrl));
      } catch (error) {
        // Not kept: once the operator fixes the metadata, the next login must see it.
        await this.forgetDiscovery();
        throw error;
      }
      if (!this.options.login && !this.options.pasteBack) await this.startServer();
      try {
        const result = await auth(this, {
          serverUrl: options.serverUrl,
          resourceMetadataUrl: options.resourceMetadataUrl,
          scope,
          fetchFn: this.fetchFn,
          forceReauthorization: true,
        });
        if (result !== 'AUTHORIZED') await this.finishAuthorization(options);
      } catch (error) {
        const discovery = this.record?.discovery;
        if (!(error instanceof BrowserUnavailable) || !discovery) throw error;
        await this.loginWithDevice(options.serverUrl, discovery, scope);
      }
    } catch (error) {
      const typed = translate(error);
      // The flow failed where it cannot tell why (e.g. no metadata: the SDK falls back to guessed endpoints, which
      // refuse the registration): what a diagnosis of the server finds is the real cause.
      if (!worthDiagnosing(typed)) throw typed;
      throw (await explainLoginFailure(given.serverUrl, { fetch: this.options.fetch, cause: error })) ?? typed;
    } finally {
      this.inFlow = false;
      this.stepUp = undefined;
      const server = this.server;
      this.server = undefined;
      await server?.close();
    }
  }

  private async forgetDiscovery(): Promise<void> {
    await this.updateRecord((current) => (current?.discovery ? { ...current, discovery: undefined } : current));
  }

  /** The stored discovery of this server's authorization server, or a fresh one (then stored). */
  private async currentDiscovery(serverUrl: string, resourceMetadataUrl?: URL): Promise<Discovery> {
    const cached = (await this.load())?.discovery;
    if (cached?.authorizationServerMetadata) return cached;
    const discovery = await discoverOAuthServerInfo(serverUrl, { resourceMetadataUrl, fetchFn: this.fetchFn });
    await this.saveDiscoveryState(discovery);
    return discovery;
  }

  /** The `resource` sent for this server: the option, else the protected-resource metadata's (checked). */
  private async resourceFor(serverUrl: string, discovery: Discovery): Promise<string | undefined> {
    const configured = this.options.resource;
    if (configured === false) return undefined;
    if (configured !== undefined) return configured;
    if (!discovery.resourceMetadata) return undefined;
    return (await selectResourceURL(serverUrl, this, discovery.resourceMetadata))
      ? discovery.resourceMetadata.resource
      : undefined;
  }

  /**
   * A device login (RFC 8628): the client registration (cached, CIMD, or dynamic with the device grant), the code
   * shown through `onDeviceCode`, the polls; the tokens are stored like any login's.
   */
  private async loginWithDevice(serverUrl: string, discovery: Discovery, scope: string | undefined): Promise<void> {
    const metadata = discovery.authorizationServerMetadata!;
    const issuer = metadata.issuer ?? discovery.authorizationServerUrl;
    let client = await this.clientInformation({ issuer });
    if (!client) {
      const viaDocument = metadata.client_id_metadata_document_supported === true && this.clientMetadataUrl;
      const registered = viaDocument
        ? { client_id: viaDocument }
        : await registerClient(discovery.authorizationServerUrl, {
            metadata,
            clientMetadata: this.clientMetadata,
            ...(scope !== undefined && { scope }),
            fetchFn: this.fetchFn,
          });
      client = { ...registered, issuer };
      await this.saveClientInformation(client);
    }
    const tokens = await deviceLogin({
      authorizationServerUrl: discovery.authorizationServerUrl,
      metadata,
      client,
      provider: this,
      server: serverUrl,
      scope: scope ?? discovery.resourceMetadata?.scopes_supported?.join(' '),
      resource: await this.resourceFor(serverUrl, discovery),
      onDeviceCode: this.options.onDeviceCode ?? printDeviceCode,
      timeoutMs: this.options.timeoutMs ?? 300_000,
      fetchFn: this.fetchFn,
    });
    await this.saveTokens({ ...tokens, issuer });
  }

  /**
   * The protected-resource metadata URL to use, in the documented order: the challenge's `resource_metadata`, and
   * when that does not answer, the path form and then the root `/.well-known/oauth-protected-resource` (the SDK,
   * given a URL, tries only that one). Without a challenge URL the SDK itself tries the path form, then the root.
   * Discovery already cached for this server needs none.
   */
  private async resourceMetadataUrl(options: {
    serverUrl: string;
    resourceMetadataUrl?: URL;
  }): Promise<URL | undefined> {
    const challenged = options.resourceMetadataUrl;
    if (!challenged || this.record?.discovery?.resourceMetadata) return challenged;
    const candidates = [challenged.href, ...protectedResourceMetadataUrls(options.serverUrl)];
    for (const url of new Set(candidates)) {
      const response = await this.fetchFn(url, { headers: { accept: 'application/json' } });
      if (response.ok) {
        const { status, headers } = response;
        this.probedResourceMetadata = { url, status, headers, body: await response.text() };
        return new URL(url);
      }
      await response.body?.cancel();
    }
    return challenged; // none answers: let discovery report it on the URL the server named
  }

  /** Starts the callback server on the registered port; if that is taken, on another one and re-registers. */
  private async startServer(): Promise<void> {
    const registered = portOf((this.record?.client?.['redirect_uris'] as string[] | undefined)?.[0]);
    // No fixed or registered port: let the OS pick a free one (a guess could collide).
    const port = this.options.callbackPort ?? registered ?? 0;
    try {
      this.server = await startCallbackServer({ port });
    } catch (error) {
      const registered = !this.options.callbackPort && !this.options.clientId && this.record?.client;
      if (!registered || (error as AuthenticationError).code !== 'ERR_CALLBACK_PORT') throw error;
      // The cached registration's redirect URI is unusable now: register again with a new port.
      await this.updateRecord((current) => (current ? { ...current, client: undefined } : current));
      this.guessedPort = undefined;
      this.server = await startCallbackServer({ port: 0 });
    }
  }

  /**
   * Refreshes once for all concurrent callers in this process, under the cross-process lock, and with a store
   * shared across machines under the store's lease (see {@link refreshShared}).
   */
  refresh(): Promise<void> {
    this.refreshing ??= this.locked(async () => {
      const before = this.record?.tokens;
      const current = (await this.load(true))?.tokens;
      // Another process (or an earlier holder of the lock) refreshed while we waited: use its tokens.
      if (current && this.replaces(current, before)) return;
      await this.refreshShared(this.serverKey);
    }).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** True when `current` are usable tokens other than `before`: someone refreshed or logged in meanwhile. */
  private replaces(current: StoredTokens | undefined, before: StoredTokens | undefined): boolean {
    return current !== undefined && current.access_token !== before?.access_token && !this.needsRefresh(current);
  }

  /**
   * The refresh, single-flight across machines when the store holds leases (Redis, PostgreSQL): the lock file only
   * orders the processes of one machine, so the refresh also takes the store's lease on this credential. Whoever
   * finds the lease taken polls until the holder has stored new tokens (and uses them without refreshing) or the
   * lease is free again — released, or expired after `refreshLeaseMs` because its holder died. Only the refresh
   * holds the lease, never a login. Call while holding the credential lock.
   */
  private async refreshShared(serverUrl: string, resourceMetadataUrl?: URL): Promise<void> {
    const leases = leasesOf(this.storage.store);
    if (!leases) return this.refreshLocked(serverUrl, resourceMetadataUrl);
    const spent = this.record?.tokens;
    const replacedInStore = async () => this.replaces((await this.load(true))?.tokens, spent);
    try {
      await withStoreLease(
        leases,
        this.storage.keyFor(this.serverKey),
        async () => {
          if (!(await replacedInStore())) await this.refreshLocked(serverUrl, resourceMetadataUrl);
          return true;
        },
        { ttlMs: this.options.refreshLeaseMs ?? 30_000, settled: async () => (await replacedInStore()) || undefined },
      );
    } catch (error) {
      if (!(error instanceof LeaseTimeoutError)) throw error;
      throw new RefreshFailedError(`No turn to refresh the token: ${error.message}`, { cause: error });
    }
  }

  /** The refresh request itself. Call only while holding the credential lock, after re-reading storage. */
  private async refreshLocked(serverUrl: string, resourceMetadataUrl?: URL): Promise<void> {
    const tokens = this.record?.tokens;
    if (!tokens?.refresh_token) throw new RefreshFailedError('There is no refresh token to use');
    let discovery = this.record?.discovery;
    if (!discovery?.authorizationServerMetadata) {
      try {
        discovery = await this.currentDiscovery(
          serverUrl,
          await this.resourceMetadataUrl({ serverUrl, resourceMetadataUrl }),
        );
      } catch (error) {
        throw new RefreshFailedError('Could not discover the authorization server to refresh the token', {
          cause: error,
        });
      }
    }
    const metadata = discovery.authorizationServerMetadata;
    const issuer = metadata?.issuer ?? discovery.authorizationServerUrl;
    if (typeof tokens['issuer'] === 'string' && tokens['issuer'] !== issuer) {
      throw new RefreshFailedError('The server now uses another authorization server; a new login is needed');
    }
    const client = await this.clientInformation({ issuer });
    if (!client) throw new RefreshFailedError('No client registration for this authorization server');
    const resource = await this.resourceFor(serverUrl, discovery);
    let fresh: StoredOAuthTokens;
    try {
      fresh = await refreshAuthorization(discovery.authorizationServerUrl, {
        metadata,
        clientInformation: client,
        refreshToken: tokens.refresh_token,
        resource,
        dpop: await this.dpop?.(),
        fetchFn: this.fetchFn,
      });
    } catch (error) {
      const code = error instanceof OAuthError ? error.code : undefined;
      if (code === 'invalid_grant' || code === 'invalid_client' || code === 'unauthorized_client') {
        const dropClient = code !== 'invalid_grant' && !this.options.clientId;
        // We hold the lock and re-read storage: these are still the tokens that failed.
        await this.updateRecord((current) => {
          if (!current) return current;
          const next: ServerRecord = { ...current };
          if (next.tokens?.refresh_token === tokens.refresh_token) next.tokens = undefined;
          if (dropClient && next.client?.client_id === client.client_id) next.client = undefined;
          return next;
        });
      }
      throw new RefreshFailedError(
        `The token refresh failed${code ? ` (${code})` : ''}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
    await this.saveTokens({ ...fresh, issuer });
    this.options.onEvent?.({ type: 'refreshed' });
  }

  /**
   * A `fetch` for the MCP transport: adds the access token (refreshed before it expires), and on `401` logs in
   * again or on `403 insufficient_scope` steps up to the union of the scopes, then retries — once for `401`, at
   * most `maxStepUps` times for `403`. With `dpop`, tokens are presented with DPoP proofs.
   *
   * @example
   * ```ts
   * const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch: oauth.wrapFetch() });
   * ```
   */
  wrapFetch(base: FetchLike = clientFetch, hooks: WrapFetchHooks = {}): FetchLike {
    // Each wrapped fetch belongs to the server of its first request (an MCP transport's first request always goes
    // to the server URL itself); a request to another origin uses that origin's own credential, never this one.
    let bound: { origin: string; fetch: FetchLike } | undefined;
    const forUrl = (url: string) => {
      const owner = this.forServer(url);
      return { origin: new URL(owner.serverKey).origin, fetch: owner.fetchWithToken(base, hooks) };
    };
    return async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      bound ??= forUrl(url);
      const route = new URL(url).origin === bound.origin ? bound : forUrl(url);
      return route.fetch(input, init);
    };
  }

  /**
   * The `OAuth` holding the credential of the MCP server at `mcpUrl`: this one when it is for that server (or not
   * yet for any, in which case it becomes that server's), else one per server sharing this one's options and
   * storage. Tokens are stored and sent per server: sharing one `OAuth` between servers never sends one server's
   * token to another.
   *
   * @example
   * ```ts
   * const oauth = new OAuth({ tokenStorage: fileStore() });
   * const notes = oauth.forServer('https://notes.example.com/mcp');
   * const mail = oauth.forServer('https://mail.example.com/mcp'); // another credential, same storage
   * ```
   */
  forServer(mcpUrl: string | URL): OAuth {
    const key = canonicalServer(mcpUrl);
    this.options.mcpUrl ??= String(mcpUrl);
    if (canonicalServer(this.options.mcpUrl) === key) return this;
    let other = this.servers.get(key);
    if (!other) {
      other = new OAuth({ ...this.options, mcpUrl: String(mcpUrl), tokenStorage: this.storage });
      this.servers.set(key, other);
    }
    return other;
  }

  /** A `fetch` that sends this server's token. Only for requests to this server's origin (see wrapFetch). */
  private fetchWithToken(base: FetchLike, hooks: WrapFetchHooks): FetchLike {
    const next = this.dpop ? withDpopFromProvider(this)(base) : base;
    return async (input, init) => {
      const serverUrl = this.serverKey;
      let sent: string | undefined;
      const send = async () => {
        const tokens = await this.tokens();
        sent = tokens?.access_token;
        const headers = new Headers(init?.headers);
        if (tokens) headers.set('authorization', `Bearer ${tokens.access_token}`);
        return next(input, { ...init, headers });
      };
      let response = await send();
      let reauthorized = false;
      let reauthenticated = false;
      let stepUps = 0;
      for (;;) {
        const challenge = extractWWWAuthenticateParams(response);
        const authentication = response.status === 401 ? userAuthenticationChallenge(response) : undefined;
        if (authentication) {
          // RFC 9470: log in again as the server asks, once; a second refusal goes back to the caller.
          if (reauthenticated) return response;
          reauthenticated = true;
          await response.body?.cancel();
          const granted = (await this.tokens())?.scope;
          await this.authorizeFor(hooks, {
            serverUrl,
            resourceMetadataUrl: challenge.resourceMetadataUrl,
            scope: computeScopeUnion(this.requestedScope, granted, challenge.scope),
            rejectedToken: sent,
            forceReauthorization: true,
            ...authentication,
          });
        } else if (response.status === 401 && !reauthorized) {
          reauthorized = true;
          await response.body?.cancel();
          await this.authorizeFor(hooks, {
            serverUrl,
            resourceMetadataUrl: challenge.resourceMetadataUrl,
            scope: computeScopeUnion(this.requestedScope, challenge.scope),
            rejectedToken: sent,
          });
        } else if (
          response.status === 403 &&
          challenge.error === 'insufficient_scope' &&
          stepUps < (this.options.maxStepUps ?? 2)
        ) {
          stepUps++;
          await response.body?.cancel();
          const granted = (await this.tokens())?.scope;
          const union = computeScopeUnion(this.requestedScope, granted, challenge.scope);
          this.requestedScope = union;
          await this.authorizeFor(hooks, {
            serverUrl,
            resourceMetadataUrl: challenge.resourceMetadataUrl,
            scope: union,
            rejectedToken: sent,
            forceReauthorization: isStrictScopeSuperset(union, granted),
          });
        } else {
          return response;
        }
        response = await send();
      }
    };
  }

  /** authorize(), with the hooks told when it starts and ends (a login has its own timeout: `timeoutMs`). */
  private async authorizeFor(hooks: WrapFetchHooks, options: AuthorizeOptions): Promise<void> {
    hooks.onAuthorizing?.(true);
    try {
      await this.authorize(options);
    } finally {
      hooks.onAuthorizing?.(false);
    }
  }
}
