// What a user and a client do against a running `gatehouse serve`: log in (code + PKCE through the login and
// consent pages), refresh, exchange. Every secret these return is something a store dump must not contain.
import { authorizationUrl, Browser, pkce, register, token } from '../authorization-server/helpers.js';
import { PASSWORD, RESOURCE } from './services.js';

export interface Session {
  clientId: string;
  clientSecret: string;
  code: string;
  accessToken: string;
  refreshToken: string;
}

/** Registers a confidential client and logs in as the superuser; returns the code and the first token pair. */
export async function login(url: string): Promise<Session> {
  const redirectUri = 'http://127.0.0.1:4711/callback';
  const reg = await register(
    { url },
    {
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token'],
    },
  );
  if (reg.status !== 201) throw new Error(`registration answered ${reg.status}: ${JSON.stringify(reg.body)}`);
  const clientId = String(reg.body['client_id']);
  const clientSecret = String(reg.body['client_secret']);
  const { verifier, challenge } = pkce();
  const { callback, last } = await new Browser().authorize(
    authorizationUrl({ url }, { clientId, redirectUri, challenge, resource: RESOURCE }),
    redirectUri,
    { credentials: { username: 'admin', password: PASSWORD } },
  );
  if (!callback) throw new Error(`login stopped at a page (${last.status}): ${last.html.slice(0, 300)}`);
  const code = callback.searchParams.get('code')!;
  const result = await token(
    { url },
    {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      client_secret: clientSecret,
      resource: RESOURCE,
    },
  );
  if (result.status !== 200)
    throw new Error(`code redemption answered ${result.status}: ${JSON.stringify(result.body)}`);
  return {
    clientId,
    clientSecret,
    code,
    accessToken: result.body['access_token']!,
    refreshToken: result.body['refresh_token']!,
  };
}

/** One refresh-token grant; the raw answer. */
export function refresh(url: string, session: Pick<Session, 'clientId' | 'clientSecret'>, refreshToken: string) {
  return token(
    { url },
    {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: session.clientId,
      client_secret: session.clientSecret,
      resource: RESOURCE,
    },
  );
}
