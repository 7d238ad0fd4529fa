import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth, type OAuthEvent } from '../../src/client/index.js';
import { parseWwwAuthenticate } from '../../src/oauth/www-authenticate.js';
import { introspectionVerifier } from '../../src/server/introspection-verifier.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { authorizationUrl, Browser, pkce, register, token } from '../authorization-server/helpers.js';
import { SERVE_USER, type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { introspectAs, RESOURCE_SERVER_CLIENT, type Slot, startSlot } from '../helpers/serve-stack.js';
import { rpc, whoamiMcp } from './helpers.js';

const PASSWORD_ACR = 'urn:gatehouse:acr:password';
const CORP_ACR = 'urn:gatehouse:acr:upstream:corp';
/** Seconds a login stays recent enough for the `recent_only` tool. */
const MAX_AGE = 8;

// `gatehouse serve` issues auth_time and acr and honours max_age / acr_values; protect() asks for them per tool
// (RFC 9470), and the Gatehouse client logs in again when asked — once.
describe('step-up by authentication strength (RFC 9470)', () => {
  let as: ServeProcess;
  let jwt: Slot;
  let opaque: Slot;

  const toolAuthentication = {
    recent_only: { maxAge: MAX_AGE },
    password_only: { acrValues: [PASSWORD_ACR] },
    corp_only: { acrValues: [CORP_ACR] },
  };
  const withTools = () =>
    whoamiMcp((server) => {
      for (const name of Object.keys(toolAuthentication)) {
        server.registerTool(name, { description: name }, async () => ({
          content: [{ type: 'text' as const, text: name }],
        }));
      }
    });

  beforeAll(async () => {
    [jwt, opaque] = await Promise.all([startSlot(), startSlot()]);
    as = await startServeProcess(
      ['--resource', `${jwt.mcpUrl}=mcp:tools`, '--resource', `${opaque.mcpUrl}=mcp:tools,format=opaque`],
      { clients: [{ ...RESOURCE_SERVER_CLIENT }] },
    );
    jwt.set(
      protect(withTools(), {
        resource: jwt.mcpUrl,
        authorizationServers: [as.url],
        verifier: jwtVerifier({ issuer: as.url }),
        requiredScopes: ['mcp:tools'],
        toolAuthentication,
      }),
    );
    opaque.set(
      protect(withTools(), {
        resource: opaque.mcpUrl,
        authorizationServers: [as.url],
        verifier: introspectionVerifier({
          endpoint: `${as.url}/token/introspection`,
          clientId: RESOURCE_SERVER_CLIENT.client_id,
          clientSecret: RESOURCE_SERVER_CLIENT.client_secret,
        }),
        requiredScopes: ['mcp:tools'],
        toolAuthentication,
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await as?.close();
    await Promise.all([jwt, opaque].map((s) => s?.close()));
  });

  const logins = (events: OAuthEvent['type'][]) => events.filter((e) => e === 'authorization-redirect').length;
  const oauthFor = (slot: Slot, events: OAuthEvent['type'][], redirects: URL[] = []) =>
    new OAuth({
      mcpUrl: slot.mcpUrl,
      login: SERVE_USER,
      tokenStorage: 'memory',
      onEvent: (e) => {
        events.push(e.type);
        if (e.type === 'authorization-redirect') redirects.push(new URL(e.url));
      },
    });

  it('issues auth_time and acr in JWT access tokens and in introspection answers', async () => {
    const before = Math.floor(Date.now() / 1000);
    const oauth = oauthFor(jwt, []);
    await oauth.authorize();
    const claims = decodeJwt((await oauth.tokens())!.access_token);
    expect(claims['acr']).toBe(PASSWORD_ACR);
    expect(claims['auth_time']).toBeGreaterThanOrEqual(before - 1);
    expect(claims['auth_time']).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));

    const handle = oauthFor(opaque, []);
    await handle.authorize();
    const introspected = await introspectAs(as.url, (await handle.tokens())!.access_token);
    expect(introspected).toMatchObject({ active: true, acr: PASSWORD_ACR, auth_time: expect.any(Number) });
    // A refreshed token keeps the time and kind of the login, not of the refresh.
    await sleep(1100);
    await oauth.refresh();
    const refreshed = decodeJwt((await oauth.tokens())!.access_token);
    expect(refreshed['auth_time']).toBe(claims['auth_time']);
    expect(refreshed['acr']).toBe(PASSWORD_ACR);
    const metadata = await (await fetch(`${as.url}/.well-known/openid-configuration`)).json();
    expect(metadata['acr_values_supported']).toEqual([PASSWORD_ACR]);
  });

  it('answers 401 insufficient_user_authentication with acr_values (RFC 9470 §3)', async () => {
    const oauth = oauthFor(jwt, []);
    await oauth.authorize();
    const accessToken = (await oauth.tokens())!.access_token;
    const call = (name: string) => rpc(jwt.mcpUrl, 'tools/call', { name, arguments: {} }, accessToken);
    expect((await call('password_only')).status).toBe(200);
    const refused = await call('corp_only');
    expect(refused.status).toBe(401);
    const [bearer] = parseWwwAuthenticate(refused.headers.get('www-authenticate'));
    expect(bearer).toMatchObject({
      scheme: 'Bearer',
      params: {
        error: 'insufficient_user_authentication',
        acr_values: CORP_ACR,
        resource_metadata: `${jwt.url}/.well-known/oauth-protected-resource/mcp`,
      },
    });
    expect(bearer!.params['error_description']).toContain(PASSWORD_ACR);
    expect(await refused.json()).toMatchObject({ error: 'insufficient_user_authentication' });
  });

  for (const [kind, slot] of [
    ['JWT', () => jwt],
    ['introspected', () => opaque],
  ] as const) {
    it(`logs in again with max_age when the login is too old, then the call runs (${kind} tokens)`, async () => {
      const events: OAuthEvent['type'][] = [];
      const redirects: URL[] = [];
      const oauth = oauthFor(slot(), events, redirects);
      await using client = new Client(slot().mcpUrl, { auth: oauth });
      expect((await client.callTool('recent_only')).data).toBe('recent_only');
      expect(logins(events)).toBe(1);
      await sleep((MAX_AGE + 1) * 1000);
      expect((await client.callTool('whoami')).isError).toBe(false); // no requirement: no new login
      expect(logins(events)).toBe(1);
      const old = (await oauth.tokens())!.access_token;
      const refused = await rpc(slot().mcpUrl, 'tools/call', { name: 'recent_only', arguments: {} }, old);
      expect(refused.status).toBe(401);
      expect(parseWwwAuthenticate(refused.headers.get('www-authenticate'))[0]!.params).toMatchObject({
        error: 'insufficient_user_authentication',
        max_age: String(MAX_AGE),
        error_description: expect.stringMatching(/logged in \d+ seconds ago/),
      });
      expect((await client.callTool('recent_only')).data).toBe('recent_only');
      expect(logins(events)).toBe(2);
      expect(redirects[1]!.searchParams.get('max_age')).toBe(String(MAX_AGE));
    }, 60_000);
  }

  it('asks for acr_values once; when the login cannot reach it, the refusal goes back to the caller', async () => {
    const events: OAuthEvent['type'][] = [];
    const redirects: URL[] = [];
    const oauth = oauthFor(jwt, events, redirects);
    await using client = new Client(jwt.mcpUrl, { auth: oauth });
    await client.callTool('whoami');
    await expect(client.callTool('corp_only')).rejects.toThrow(/insufficient_user_authentication|401/);
    expect(logins(events)).toBe(2);
    expect(redirects[1]!.searchParams.get('acr_values')).toBe(CORP_ACR);
  });

  it('gatehouse serve logs in again for max_age even when the browser session is still signed in', async () => {
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const reg = await register({ url: as.url }, { redirect_uris: [redirectUri], client_name: 'Step-up test' });
    const clientId = String(reg.body['client_id']);
    const browser = new Browser();
    const flow = async (extra: Record<string, string> = {}) => {
      const { verifier, challenge } = pkce();
      const pages = browser.pages.length;
      const { callback } = await browser.authorize(
        authorizationUrl(
          { url: as.url },
          { clientId, redirectUri, challenge, resource: jwt.mcpUrl, scope: 'mcp:tools', ...extra },
        ),
        redirectUri,
        { credentials: SERVE_USER },
      );
      const code = callback?.searchParams.get('code');
      expect(code, callback?.href).toBeTruthy();
      const result = await token(
        { url: as.url },
        {
          grant_type: 'authorization_code',
          code: code!,
          redirect_uri: redirectUri,
          code_verifier: verifier,
          client_id: clientId,
          resource: jwt.mcpUrl,
        },
      );
      const loggedIn = browser.pages.slice(pages).some((p) => p.kind === 'login');
      return { loggedIn, claims: decodeJwt(result.body['access_token']!) };
    };
    const first = await flow();
    expect(first.loggedIn).toBe(true);
    await sleep(1100);
    const reused = await flow();
    expect(reused.loggedIn).toBe(false); // the session signs in without a page
    expect(reused.claims['auth_time']).toBe(first.claims['auth_time']);
    expect((await flow({ max_age: '3600' })).loggedIn).toBe(false); // recent enough
    const fresh = await flow({ max_age: '0' });
    expect(fresh.loggedIn).toBe(true);
    expect(fresh.claims['auth_time']).toBeGreaterThan(first.claims['auth_time'] as number);
    // acr_values the session already has: no page; another one: the login page again.
    expect((await flow({ acr_values: PASSWORD_ACR })).loggedIn).toBe(false);
    expect((await flow({ acr_values: CORP_ACR })).loggedIn).toBe(true);
    // A malformed max_age is refused, not ignored.
    const { challenge } = pkce();
    const bad = await browser.request(
      authorizationUrl(
        { url: as.url },
        { clientId, redirectUri, challenge, resource: jwt.mcpUrl, scope: 'mcp:tools', max_age: 'soon' },
      ),
    );
    const location = new URL(bad.headers.get('location') ?? `${as.url}/`, as.url);
    expect(location.searchParams.get('error')).toBe('invalid_request');
  }, 60_000);
});
