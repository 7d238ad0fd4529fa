import {
  createPrivateKeyJwtAuth,
  DpopSession,
  discoverOAuthServerInfo,
  type FetchLike,
  fetchToken,
  type OAuthClientInformationMixed,
  type OAuthClientMetadata,
  type OAuthClientProvider,
  OAuthError,
  type OAuthServerInfo,
  requestJwtAuthorizationGrant,
  type StoredOAuthTokens,
  selectResourceURL,
  withDpopFromProvider,
} from '@modelcontextprotocol/client';
import { JWT_BEARER_GRANT_TYPE as JWT_BEARER } from '../oauth/jwt-bearer.js';
import { memoryStore } from '../storage/memory.js';
import { isAccessTokenExpired, type TokenResponse, TokenStorage } from '../storage/tokens.js';
import type { StoreInput } from '../storage/types.js';
import { AuthenticationError, DiscoveryError } from './errors.js';
import { retryingFetch } from './fetch-retry.js';
import { clientFetch } from './network.js';

/** What an assertion callback learns about the target (for minting a workload or ID-JAG assertion). */
export interface AssertionContext {
  /** The MCP server's authorization server (its issuer). */
  authorizationServerUrl: string;
  /** The resource the token is for. */
  resourceUrl: string | undefined;
  scope: string | undefined;
  fetchFn: FetchLike;
}

/** An enterprise IdP that exchanges its ID token for an ID-JAG (SEP-990, RFC 8693), then used as the assertion. */
export interface IdJagOptions {
  /** The IdP's token endpoint. */
  tokenEndpoint: string;
  /** The user's ID token from the IdP. */
  idToken: string;
  /** This client's ID (and secret) at the IdP. */
  clientId: string;
  clientSecret?: string;
}

/** Options of {@link MachineAuth}. Give `clientSecret` or `privateKey` (client credentials), or `assertion`/`idJag`. */
export interface MachineAuthOptions {
  /** The MCP server URL. */
  mcpUrl?: string;
  /** The client ID registered with the authorization server. */
  clientId: string;
  /** Client secret, sent with `client_secret_basic` (or `_post` when the server supports only that). */
  clientSecret?: string;
  /** Private key (PEM, JWK or bytes) for `private_key_jwt` client authentication (RFC 7523 §2.2). */
  privateKey?: string | Uint8Array | Record<string, unknown>;
  /** Signing algorithm of `privateKey`. Default `ES256`. */
  algorithm?: string;
  /**
   * Use the JWT-bearer grant (RFC 7523 §2.1) with this assertion — a workload identity token (SEP-1933), or a
   * function minting one per request. Without it, the grant is `client_credentials`.
   */
  assertion?: string | ((context: AssertionContext) => string | Promise<string>);
  /** Obtain the JWT-bearer assertion from an enterprise IdP (ID-JAG, SEP-990). */
  idJag?: IdJagOptions;
  /** Scopes to request. */
  scopes?: string | string[];
  /** Any Keyv-compatible store for the access token. Default: in memory. */
  tokenStorage?: StoreInput | TokenStorage;
  /** Sender-constrain tokens with DPoP (RFC 9449). */
  dpop?: boolean | DpopSession;
  /** Fetch a new token this many seconds before the current one expires. Default 60. */
  refreshSkewSeconds?: number;
  /** `fetch` for the token requests. Default: {@link clientFetch} (proxy variables and extra CAs honoured). */
  fetch?: typeof fetch;
}

/**
 * OAuth for machines, without a user: `client_credentials` with a client secret or `private_key_jwt`, and the
 * JWT-bearer grant for workload identity (SEP-1933) and enterprise ID-JAG (SEP-990), optionally DPoP-bound. Tokens
 * are cached in any Keyv-compatible store and fetched again before they expire. A failed token request is not
 * retried with the same input: the error says what to fix.
 *
 * @example
 * ```ts
 * import { MachineAuth } from 'gatehouse/client';
 *
 * const auth = new MachineAuth({ mcpUrl, clientId: 'reporting-job', clientSecret: process.env.CLIENT_SECRET });
 * const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch: auth.wrapFetch() });
 * ```
 */
export class MachineAuth implements OAuthClientProvider {
  readonly options: MachineAuthOptions;
  readonly storage: TokenStorage;
  private readonly fetchFn: FetchLike;
  private info: OAuthServerInfo | undefined;
  private fetching: Promise<void> | undefined;
  private dpopSession: Promise<DpopSession> | undefined;
  private target: { authorizationServerUrl: string; resourceUrl: string | undefined } | undefined;
  addClientAuthentication?: NonNullable<OAuthClientProvider['addClientAuthentication']>;
  dpop?: () => Promise<DpopSession> | undefined;

  constructor(options: MachineAuthOptions) {
    this.options = options;
    this.storage =
      options.tokenStorage instanceof TokenStorage
        ? options.tokenStorage
        : // Memory is a fine default here: a machine fetches a new token without bothering anyone.
          new TokenStorage(options.tokenStorage ?? memoryStore());
    this.fetchFn = retryingFetch(options.fetch ?? clientFetch);
    if (options.privateKey && !this.isJwtBearer) {
      const sign = (audience: string) =>
        createPrivateKeyJwtAuth({
          issuer: options.clientId,
          subject: options.clientId,
          privateKey: options.privateKey!,
          alg: options.algorithm ?? 'ES256',
          audience,
        });
      // The audience of a client assertion is the authorization server's issuer (RFC 7523 §3, RFC 9126 §2).
      this.addClientAuthentication = (headers, params, url, metadata) =>
        sign(metadata?.issuer ?? String(url))(headers, params, url, metadata);
    }
    if (options.dpop instanceof DpopSession) {
      const session = Promise.resolve(options.dpop);
      this.dpop = () => session;
    } else if (options.dpop) this.dpop = () => (this.dpopSession ??= DpopSession.create());
  }

  private get isJwtBearer(): boolean {
    return Boolean(this.options.assertion || this.options.idJag);
  }

  private get serverKey(): string {
    if (!this.options.mcpUrl) throw new TypeError('MachineAuth needs the MCP server URL: pass mcpUrl');
    return this.options.mcpUrl;
  }

  get redirectUrl(): undefined {
    return undefined;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: this.options.clientId,
      redirect_uris: [],
      grant_types: [this.isJwtBearer ? JWT_BEARER : 'client_credentials'],
      token_endpoint_auth_method: this.options.privateKey
        ? 'private_key_jwt'
        : this.options.clientSecret
          ? 'client_secret_basic'
          : 'none',
    };
  }

  clientInformation(): OAuthClientInformationMixed {
    return {
      client_id: this.options.clientId,
      ...(this.options.clientSecret ? { client_secret: this.options.clientSecret } : {}),
      token_endpoint_auth_method: this.clientMetadata.token_endpoint_auth_method,
    } as OAuthClientInformationMixed;
  }

  async tokens(): Promise<StoredOAuthTokens | undefined> {
    const tokens = await this.storage.getTokens(this.serverKey);
    if (!tokens) return undefined;
    const { expires_at, refresh_token_expires_at: _, ...rest } = tokens;
    const sdk = { ...rest } as StoredOAuthTokens;
    if (expires_at !== undefined) sdk.expires_in = Math.max(0, expires_at - Math.floor(Date.now() / 1000));
    return sdk;
  }

  async saveTokens(tokens: StoredOAuthTokens): Promise<void> {
    await this.storage.saveTokens(this.serverKey, tokens as unknown as TokenResponse);
  }

  redirectToAuthorization(): void {
    throw new AuthenticationError('A machine client cannot send a user to a login page', {
      code: 'ERR_NO_LOGIN_METHOD',
      hint: 'Use OAuth for interactive logins; MachineAuth obtains tokens with its own credentials.',
    });
  }

  saveCodeVerifier(): void {}

  codeVerifier(): string {
    return '';
  }

  saveAuthorizationServerUrl(url: string): void {
    this.target = { authorizationServerUrl: url, resourceUrl: this.target?.resourceUrl };
  }

  async prepareTokenRequest(scope?: string): Promise<URLSearchParams> {
    const params = new URLSearchParams();
    if (this.isJwtBearer) {
      params.set('grant_type', JWT_BEARER);
      params.set('assertion', await this.assertion(scope));
    } else params.set('grant_type', 'client_credentials');
    if (scope) params.set('scope', scope);
    return params;
  }

  private async assertion(scope: string | undefined): Promise<string> {
    const context: AssertionContext = {
      authorizationServerUrl: this.target?.authorizationServerUrl ?? '',
      resourceUrl: this.target?.resourceUrl,
      scope,
      fetchFn: this.fetchFn,
    };
    const { assertion, idJag } = this.options;
    if (typeof assertion === 'string') return assertion;
    if (assertion) return assertion(context);
    const grant = await requestJwtAuthorizationGrant({
      tokenEndpoint: idJag!.tokenEndpoint,
      audience: context.authorizationServerUrl,
      resource: context.resourceUrl ?? this.serverKey,
      idToken: idJag!.idToken,
      clientId: idJag!.clientId,
      clientSecret: idJag!.clientSecret,
      scope,
      fetchFn: this.fetchFn,
    });
    return grant.jwtAuthGrant;
  }

  /** Fetches a new access token now (once for all concurrent callers). */
  fetchToken(): Promise<void> {
    this.fetching ??= this.runFetch().finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  private async runFetch(): Promise<void> {
    const serverUrl = this.serverKey;
    if (!this.info) {
      try {
        this.info = await discoverOAuthServerInfo(serverUrl, { fetchFn: this.fetchFn });
      } catch (error) {
        throw new DiscoveryError(`Could not discover the authorization server of ${serverUrl}`, {
          hint: 'Check the MCP URL and that the server publishes its protected-resource metadata.',
          cause: error,
        });
      }
    }
    const info = this.info;
    const issuer = info.authorizationServerMetadata?.issuer ?? info.authorizationServerUrl;
    const selected = await selectResourceURL(serverUrl, this, info.resourceMetadata);
    const resource = selected && info.resourceMetadata ? info.resourceMetadata.resource : selected;
    this.target = { authorizationServerUrl: issuer, resourceUrl: resource ? String(resource) : undefined };
    const scope =
      (Array.isArray(this.options.scopes) ? this.options.scopes.join(' ') : this.options.scopes) ??
      info.resourceMetadata?.scopes_supported?.join(' ');
    try {
      const tokens = await fetchToken(this, info.authorizationServerUrl, {
        metadata: info.authorizationServerMetadata,
        resource,
        scope,
        fetchFn: this.fetchFn,
      });
      await this.saveTokens({ ...tokens, issuer });
    } catch (error) {
      const code = error instanceof OAuthError ? ` (${error.code})` : '';
      throw new AuthenticationError(
        `The authorization server refused the ${this.isJwtBearer ? 'JWT-bearer' : 'client credentials'} token request${code}: ${
          error instanceof Error ? error.message : String(error)
        }`,
        {
          code: 'ERR_TOKEN_REQUEST',
          hint: this.isJwtBearer
            ? 'Check the assertion (audience, expiry, issuer) and that this client may use the grant.'
            : 'Check clientId and the client secret or key.',
          cause: error,
        },
      );
    }
  }

  /**
   * A `fetch` for the MCP transport: adds the access token (fetched first when missing or about to expire) and,
   * when the server answers `401`, fetches a new one and retries once.
   */
  wrapFetch(base: FetchLike = clientFetch): FetchLike {
    const next = this.dpop ? withDpopFromProvider(this)(base) : base;
    return async (input, init) => {
      this.options.mcpUrl ??= String(input instanceof Request ? input.url : input);
      const send = async (sentToken: (token: string | undefined) => void) => {
        let tokens = await this.storage.getTokens(this.serverKey);
        if (!tokens || isAccessTokenExpired(tokens, { skewSeconds: this.options.refreshSkewSeconds ?? 60 })) {
          await this.fetchToken();
          tokens = await this.storage.getTokens(this.serverKey);
        }
        const headers = new Headers(init?.headers);
        if (tokens) headers.set('authorization', `Bearer ${tokens.access_token}`);
        sentToken(tokens?.access_token);
        return next(input, { ...init, headers });
      };
      let sent: string | undefined;
      const response = await send((token) => {
        sent = token;
      });
      if (response.status !== 401) return response;
      await response.body?.cancel();
      // Forget the token only if it is still the one refused: a concurrent request may have replaced it.
      await this.storage.update(this.serverKey, (record) =>
        record && record.tokens?.access_token === sent ? { ...record, tokens: undefined } : record,
      );
      this.info = undefined;
      return send(() => {});
    };
  }
}
