import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  auth,
  type OAuthClientInformationContext,
  type OAuthClientMetadata,
  type OAuthClientProvider,
  type OAuthDiscoveryState,
  type StoredOAuthClientInformation,
  type StoredOAuthTokens,
} from '@modelcontextprotocol/client';
import { AuthenticationError, AuthorizationDeniedError } from './errors.js';
import { headlessAuthorize, type LoginCredentials } from './headless-login.js';

/** What the OAuth flow is doing, for progress output. `http` events carry every request the flow makes. */
export type OAuthEvent =
  | { type: 'http'; method: string; url: string; status: number }
  | { type: 'authorization-redirect'; url: string }
  | { type: 'authorized' };

/** Options of {@link OAuth}. */
export interface OAuthOptions {
  /** The MCP server URL. Optional when the `OAuth` is passed to a client that knows it. */
  mcpUrl?: string;
  /** The name shown on the consent page. Default `Gatehouse`. */
  clientName?: string;
  /** Scopes to request, space-separated or as a list. Default: what the server asks for. */
  scopes?: string | string[];
  /** A pre-registered client ID; skips registration. */
  clientId?: string;
  /** The pre-registered client's secret, for confidential clients. */
  clientSecret?: string;
  /** Log in by posting the authorization server's login form with these credentials: no browser needed. */
  login?: LoginCredentials;
  /** Called with the authorization URL instead of opening a browser. */
  redirectHandler?: (authorizationUrl: URL) => void | Promise<void>;
  /** The loopback port of the redirect URI. */
  callbackPort?: number;
  /** `fetch` used for every OAuth request. */
  fetch?: typeof fetch;
  /** Receives progress events. */
  onEvent?: (event: OAuthEvent) => void;
}

function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * OAuth 2.1 login for MCP servers: an `OAuthClientProvider` for the official SDK's `auth()` flow, which does
 * discovery, dynamic registration, PKCE S256 and the token exchange; `OAuth` adds the login step and storage.
 *
 * @example
 * ```ts
 * import { OAuth } from 'gatehouse/client';
 *
 * const oauth = new OAuth({ mcpUrl: 'http://127.0.0.1:8000/mcp', login: { username: 'demo', password: 'demo' } });
 * await oauth.authorize();
 * const tokens = await oauth.tokens();
 * ```
 */
export class OAuth implements OAuthClientProvider {
  readonly options: OAuthOptions;
  private readonly port: number;
  private clientInfo: StoredOAuthClientInformation | undefined;
  private storedTokens: StoredOAuthTokens | undefined;
  private verifier: string | undefined;
  private discovery: OAuthDiscoveryState | undefined;
  private expectedState: string | undefined;
  private callbackUrl: URL | undefined;
  private readonly fetchFn: typeof fetch;

  constructor(options: OAuthOptions = {}) {
    this.options = options;
    this.port = options.callbackPort ?? 49152 + Math.floor(Math.random() * 16000);
    if (options.clientId) {
      this.clientInfo = { client_id: options.clientId, client_secret: options.clientSecret };
    }
    const base = options.fetch ?? fetch;
    this.fetchFn = async (input, init) => {
      const response = await base(input, init);
      const url = input instanceof Request ? input.url : String(input);
      options.onEvent?.({ type: 'http', method: init?.method ?? 'GET', url, status: response.status });
      return response;
    };
  }

  get redirectUrl(): string {
    return `http://127.0.0.1:${this.port}/callback`;
  }

  get clientMetadata(): OAuthClientMetadata {
    const scope = Array.isArray(this.options.scopes) ? this.options.scopes.join(' ') : this.options.scopes;
    return {
      client_name: this.options.clientName ?? 'Gatehouse',
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: this.options.clientSecret ? 'client_secret_basic' : 'none',
      ...(scope ? { scope } : {}),
    };
  }

  state(): string {
    this.expectedState = randomBytes(32).toString('base64url');
    return this.expectedState;
  }

  clientInformation(_ctx?: OAuthClientInformationContext): StoredOAuthClientInformation | undefined {
    return this.clientInfo;
  }

  saveClientInformation(info: StoredOAuthClientInformation): void {
    this.clientInfo = info;
  }

  tokens(_ctx?: OAuthClientInformationContext): StoredOAuthTokens | undefined {
    return this.storedTokens;
  }

  saveTokens(tokens: StoredOAuthTokens): void {
    this.storedTokens = tokens;
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.verifier = codeVerifier;
  }

  codeVerifier(): string {
    if (!this.verifier) throw new AuthenticationError('No PKCE code verifier was saved for this login');
    return this.verifier;
  }

  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.discovery = state;
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.discovery;
  }

  invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): void {
    if (scope === 'all' || scope === 'client') this.clientInfo = undefined;
    if (scope === 'all' || scope === 'tokens') this.storedTokens = undefined;
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
    if (scope === 'all' || scope === 'discovery') this.discovery = undefined;
  }

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    this.options.onEvent?.({ type: 'authorization-redirect', url: authorizationUrl.href });
    if (this.options.login) {
      this.callbackUrl = await headlessAuthorize(authorizationUrl, this.redirectUrl, this.options.login, this.fetchFn);
      return;
    }
    if (this.options.redirectHandler) {
      await this.options.redirectHandler(authorizationUrl);
      return;
    }
    throw new AuthenticationError('No way to complete the login: browser login is not available yet', {
      code: 'ERR_NO_LOGIN_METHOD',
      hint: 'Pass `login: { username, password }` for headless login.',
    });
  }

  /**
   * Runs the whole flow against the MCP server: uses stored tokens if valid, refreshes them if possible,
   * otherwise discovers, registers and logs in.
   */
  async authorize(options: { serverUrl?: string; resourceMetadataUrl?: URL; scope?: string } = {}): Promise<void> {
    const serverUrl = options.serverUrl ?? this.options.mcpUrl;
    if (!serverUrl) throw new TypeError('OAuth.authorize() needs the MCP server URL (pass mcpUrl)');
    const common = {
      serverUrl,
      resourceMetadataUrl: options.resourceMetadataUrl,
      scope: options.scope,
      fetchFn: this.fetchFn,
    };
    const first = await auth(this, common);
    if (first === 'AUTHORIZED') {
      this.options.onEvent?.({ type: 'authorized' });
      return;
    }
    const callback = this.callbackUrl;
    this.callbackUrl = undefined;
    if (!callback) {
      throw new AuthenticationError('The login did not return to the client', { code: 'ERR_NO_CALLBACK' });
    }
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
    await auth(this, { ...common, authorizationCode: code, iss: params.get('iss') ?? undefined });
    this.options.onEvent?.({ type: 'authorized' });
  }
}
