import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type Configuration, errors as oidcErrors } from 'oidc-provider';
import { canonicalResourceUri } from '../oauth/resource-uri.js';
import { escapeHtml, PAGE_HEADERS, page } from './html.js';
import { createInteractionHandler } from './interactions.js';
import type { Authenticator } from './users.js';

/** A resource server (MCP server) this authorization server issues tokens for. */
export interface ResourceConfig {
  /** The resource's canonical URL; it becomes the `aud` of its access tokens. */
  resource: string;
  /** Scopes a client may request for it. */
  scopes?: string[];
  /** Access-token lifetime in seconds. Default 3600. */
  accessTokenTtl?: number;
}

/** Options of {@link createAuthorizationServer}. */
export interface AuthorizationServerOptions {
  /** The issuer identifier: the public base URL of this server, e.g. `https://auth.example.com`. */
  issuer: string;
  /** Checks user credentials on the login page. */
  authenticator: Authenticator;
  /** The resources tokens may be issued for. A request naming any other resource gets `invalid_target`. */
  resources: ResourceConfig[];
  /** Pre-registered clients, in oidc-provider's client metadata format. */
  clients?: Configuration['clients'];
  /** Extra oidc-provider configuration, merged last. For what Gatehouse has no option for yet. */
  providerConfiguration?: Configuration;
}

/** A configured authorization server, not yet listening. */
export interface AuthorizationServer {
  readonly issuer: string;
  /** The underlying oidc-provider instance. */
  readonly provider: Provider;
  /** A `node:http` listener serving every endpoint and page. */
  readonly listener: (req: IncomingMessage, res: ServerResponse) => void;
}

const INTERACTION_PATH = /^\/interaction\/[A-Za-z0-9_-]+(?:\/(?:login|confirm))?$/;

/**
 * Creates an MCP authorization server on oidc-provider with the MCP profile: authorization code with PKCE S256
 * only, resource indicators required and access tokens issued as JWTs whose `aud` is the resource, RFC 9207
 * `iss` in responses, dynamic client registration, introspection, revocation, and login and consent pages.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { createAuthorizationServer, staticUsers } from 'gatehouse/authorization-server';
 *
 * const as = await createAuthorizationServer({
 *   issuer: 'http://127.0.0.1:9000',
 *   authenticator: await staticUsers({ alice: 'wonderland' }),
 *   resources: [{ resource: 'http://127.0.0.1:8000/mcp', scopes: ['mcp:tools'] }],
 * });
 * createServer(as.listener).listen(9000, '127.0.0.1');
 * ```
 */
export async function createAuthorizationServer(options: AuthorizationServerOptions): Promise<AuthorizationServer> {
  const resources = new Map(options.resources.map((r) => [canonicalResourceUri(r.resource), r]));
  const resourceScopes = [...new Set(options.resources.flatMap((r) => r.scopes ?? []))];

  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const signingKey = {
    ...(await exportJWK(privateKey)),
    kid: randomBytes(8).toString('hex'),
    alg: 'ES256',
    use: 'sig',
  };

  const findResource = (indicator: string) => {
    try {
      return resources.get(canonicalResourceUri(indicator));
    } catch {
      return undefined;
    }
  };

  const configuration: Configuration = {
    clients: options.clients ?? [],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    responseTypes: ['code'],
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', ...resourceScopes],
    claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: 'ES256',
    },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
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
          return {
            scope: (config.scopes ?? []).join(' '),
            audience: indicator,
            accessTokenTTL: config.accessTokenTtl ?? 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    findAccount: async (_ctx, subject) => {
      const account = options.authenticator.findAccount
        ? await options.authenticator.findAccount(subject)
        : { subject };
      if (!account) return undefined;
      return { accountId: subject, claims: async () => ({ sub: subject, ...account.claims }) };
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') &&
      (code.scopes.has('offline_access') || client.applicationType === 'native'),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      ClientCredentials: 600,
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
    ...options.providerConfiguration,
  };

  const provider = new Provider(options.issuer, configuration);
  const interactions = createInteractionHandler(provider, {
    authenticator: options.authenticator,
    csrfSecret: randomBytes(32),
  });
  const oidcListener = provider.callback();

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (INTERACTION_PATH.test(path)) {
      interactions(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500, PAGE_HEADERS);
        res.end(page('Error', '<h1>Something went wrong</h1>'));
      });
      return;
    }
    oidcListener(req, res);
  };

  return { issuer: options.issuer, provider, listener };
}
