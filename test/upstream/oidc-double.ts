import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

export interface OidcDouble {
  url: string;
  provider: Provider;
  close(): Promise<void>;
}

/**
 * A second oidc-provider on loopback, playing the organisation's IdP. Its development login page accepts any
 * login name; the account's email is `<login>@<emailDomain>`, verified unless the login starts with `unverified`.
 */
export async function startOidcDouble(options: {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  emailDomain?: string;
  accessTokenTtl?: number;
  /** More clients (same redirect URI), e.g. to mint ID tokens for another audience. */
  extraClients?: Array<{ clientId: string; clientSecret: string }>;
}): Promise<OidcDouble> {
  let target: ((req: never, res: never) => void) | undefined;
  const server: Server = createServer((req, res) => target!(req as never, res as never));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'upstream-rs256', alg: 'RS256', use: 'sig' };
  const domain = options.emailDomain ?? 'example.com';
  const provider = new Provider(url, {
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        redirect_uris: [options.redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      ...(options.extraClients ?? []).map((c) => ({
        client_id: c.clientId,
        client_secret: c.clientSecret,
        redirect_uris: [options.redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code' as const],
      })),
    ],
    jwks: { keys: [jwk as never] },
    cookies: { keys: ['upstream-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    features: { devInteractions: { enabled: true }, revocation: { enabled: true } },
    pkce: { required: () => true },
    ttl: {
      AccessToken: options.accessTokenTtl ?? 3600,
      IdToken: 3600,
      RefreshToken: 86_400,
      Interaction: 600,
      Session: 3600,
      Grant: 86_400,
    },
    renderError(ctx, out) {
      ctx.type = 'text/plain';
      ctx.body = `error: ${out.error}`;
    },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: `${id}@${domain}`,
            email_verified: !id.startsWith('unverified'),
            name: `User ${id}`,
            preferred_username: id,
            groups: id.startsWith('admin') ? ['admins', 'mcp-users'] : ['mcp-users'],
          };
        },
      };
    },
  });
  // oidc-provider logs a warning per dev feature; keep test output readable.
  provider.on('server_error', () => {});
  target = provider.callback() as never;
  return {
    url,
    provider,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
