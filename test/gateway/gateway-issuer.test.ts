import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import {
  cleanup,
  EVERYTHING,
  EXTERNAL_AS_PASSWORD,
  externalAuthorizationServer,
  headlessOAuth,
  startGatewayProcess,
} from './helpers.js';

const PASSWORD = EXTERNAL_AS_PASSWORD;

/** `gatehouse serve` and a `gatehouse gateway --issuer … --same-origin-as` in front of stdio server-everything. */
async function sameOriginGateway() {
  const external = await externalAuthorizationServer();
  const gateway = await startGatewayProcess([
    '--port',
    String(external.port),
    '--issuer',
    external.issuer,
    '--same-origin-as',
    '--',
    process.execPath,
    EVERYTHING,
  ]);
  return { ...external, gateway };
}

describe('gatehouse gateway: an external authorization server (--issuer), and same-origin AS endpoints', () => {
  afterAll(cleanup);

  it('protects the upstream with tokens from `gatehouse serve`, and runs no authorization server itself', async () => {
    const { port, mcpUrl, issuer } = await externalAuthorizationServer();
    const gateway = await startGatewayProcess([
      '--port',
      String(port),
      '--issuer',
      issuer,
      '--',
      process.execPath,
      EVERYTHING,
    ]);
    expect(gateway.stderr()).toContain(`authorization server: ${issuer}`);
    expect(gateway.stderr()).not.toContain('(embedded)');
    expect(gateway.password).toBeUndefined();
    expect((await fetch(`${gateway.url}/.well-known/oauth-authorization-server`)).status).toBe(404);
    const metadata = (await (await fetch(`${gateway.url}/.well-known/oauth-protected-resource/mcp`)).json()) as {
      authorization_servers: string[];
    };
    expect(metadata.authorization_servers).toEqual([issuer]);

    await using client = await new Client(mcpUrl, { auth: headlessOAuth(mcpUrl, 'admin', PASSWORD) }).connect();
    const echo = await client.callTool('echo', { message: 'external issuer' });
    expect(echo.data).toBe('Echo: external issuer');
  }, 90_000);

  it('--same-origin-as: metadata, /authorize, /token and /register at the gateway origin reach the external AS', async () => {
    const { gateway, mcpUrl, issuer } = await sameOriginGateway();
    const asMetadata = (await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      string
    >;
    const metadata = (await (await fetch(`${gateway.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    expect(metadata).toMatchObject({
      issuer: gateway.url,
      authorization_endpoint: `${gateway.url}/authorize`,
      token_endpoint: `${gateway.url}/token`,
      registration_endpoint: `${gateway.url}/register`,
      jwks_uri: asMetadata.jwks_uri,
    });
    expect(metadata.authorization_response_iss_parameter_supported).toBeUndefined();
    const preflight = await fetch(`${gateway.url}/.well-known/oauth-authorization-server`, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'GET' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');

    const query = 'response_type=code&client_id=c%201&state=s%26t&code_challenge=abc&code_challenge_method=S256';
    const authorize = await fetch(`${gateway.url}/authorize?${query}`, { redirect: 'manual' });
    expect(authorize.status).toBe(302);
    const location = new URL(authorize.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe(asMetadata.authorization_endpoint);
    expect(location.search).toBe(`?${query}`);

    // Log in as a client that registers and gets tokens at the AS, then refresh at the gateway's origin.
    const oauth = headlessOAuth(mcpUrl, 'admin', PASSWORD);
    await using client = await new Client(mcpUrl, { auth: oauth }).connect();
    expect((await client.callTool('echo', { message: 'before refresh' })).data).toBe('Echo: before refresh');
    const tokens = await oauth.storage.getTokens(mcpUrl);
    const registration = await oauth.storage.getClient(mcpUrl);
    expect(tokens?.refresh_token).toBeTruthy();
    const refreshed = await fetch(`${gateway.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: tokens!.refresh_token!,
        client_id: registration!.client_id,
        resource: mcpUrl,
      }),
    });
    const body = (await refreshed.json()) as { access_token?: string; refresh_token?: string };
    expect(refreshed.status, JSON.stringify(body)).toBe(200);
    expect(refreshed.headers.get('cache-control')).toContain('no-store');
    expect(body.access_token).toBeTruthy();
    // The refreshed token is the AS's own: the gateway accepts it for the upstream.
    const initialize = await fetch(mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${body.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      }),
    });
    expect(initialize.status).toBe(200);
    await initialize.body?.cancel();
    // A refresh token the AS does not know: its own error comes back as it is.
    const unknown = await fetch(`${gateway.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: 'not-a-refresh-token',
        client_id: registration!.client_id,
      }),
    });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: string }).error).toBe('invalid_grant');

    const register = await fetch(`${gateway.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'same-origin',
        redirect_uris: ['http://127.0.0.1:9/callback'],
        token_endpoint_auth_method: 'none',
      }),
    });
    expect(register.status).toBe(201);
    expect(((await register.json()) as { client_id: string }).client_id).toBeTruthy();

    const oversized = await fetch(`${gateway.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=refresh_token&refresh_token=${'x'.repeat(100_000)}`,
    });
    expect(oversized.status).toBe(413);
  }, 120_000);

  it("--same-origin-as: /token carries a confidential client's credentials to the AS; an AS that is gone gives 503", async () => {
    const { gateway, child } = await sameOriginGateway();
    const register = await fetch(`${gateway.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: ['http://127.0.0.1:9/callback'],
        token_endpoint_auth_method: 'client_secret_basic',
      }),
    });
    expect(register.status).toBe(201);
    const { client_id: id, client_secret: secret } = (await register.json()) as Record<string, string>;
    const token = (credentials: string) =>
      fetch(`${gateway.url}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(credentials).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'unknown' }),
      });
    // The AS authenticates the client by the header the gateway passed on: a wrong secret is invalid_client,
    // the right one gets as far as the grant.
    const wrong = await token(`${id}:not-the-secret`);
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: string }).error).toBe('invalid_client');
    const right = await token(`${id}:${secret}`);
    expect(right.status).toBe(400);
    expect(((await right.json()) as { error: string }).error).toBe('invalid_grant');

    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const gone = await token(`${id}:${secret}`);
    expect(gone.status).toBe(503);
    expect(((await gone.json()) as { error: string }).error).toBe('temporarily_unavailable');
    expect(gateway.child.exitCode).toBeNull();
  }, 120_000);

  it('--same-origin-as with the embedded AS: metadata at the origin; /authorize, /token, /register answer', async () => {
    const gateway = await startGatewayProcess(
      ['--superuser', 'admin', '--same-origin-as', '--', process.execPath, EVERYTHING],
      {
        env: { GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD },
      },
    );
    const metadata = (await (await fetch(`${gateway.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      string
    >;
    // The embedded AS's own endpoints are /auth and /reg; /authorize and /register are aliases of them.
    expect(metadata).toMatchObject({
      issuer: gateway.url,
      authorization_endpoint: `${gateway.url}/auth`,
      token_endpoint: `${gateway.url}/token`,
      registration_endpoint: `${gateway.url}/reg`,
    });
    const register = await fetch(`${gateway.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:9/callback'], token_endpoint_auth_method: 'none' }),
    });
    expect(register.status).toBe(201);
    const { client_id: clientId } = (await register.json()) as { client_id: string };
    const authorize = await fetch(
      `${gateway.url}/authorize?${new URLSearchParams({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: 'http://127.0.0.1:9/callback',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        code_challenge_method: 'S256',
        resource: gateway.mcp.mcp!,
        scope: 'mcp:tools',
        state: 'xyz',
      })}`,
      { redirect: 'manual' },
    );
    // The AS takes the request on: to its login page.
    expect(authorize.status, await authorize.clone().text()).toBe(303);
    expect(authorize.headers.get('location')).toMatch(/\/interaction\//);
    await authorize.body?.cancel();
    const token = await fetch(`${gateway.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'unknown', client_id: clientId }),
    });
    expect(token.status).toBe(400);
    expect(((await token.json()) as { error: string }).error).toBe('invalid_grant');
  }, 120_000);
});
