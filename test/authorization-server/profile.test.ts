import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizationUrl,
  Browser,
  decodeJwt,
  loginFlow,
  pkce,
  RESOURCE,
  register,
  type ServedAs,
  startServedAs,
  token,
} from './helpers.js';

// Every promise here is checked on `gatehouse serve` as a process, configured with flags and --config.

describe('MCP profile', () => {
  let as: ServedAs;
  beforeAll(async () => {
    as = await startServedAs({
      clients: [
        {
          client_id: 'web-app',
          client_name: 'Web <App> & "friends"',
          token_endpoint_auth_method: 'none',
          redirect_uris: ['https://app.example.com/callback'],
        },
        {
          client_id: 'service',
          client_secret: 'service-secret-value-long-enough',
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
    });
  });
  afterAll(() => as.close());

  it('advertises the MCP profile in its metadata', async () => {
    const metadata = (await (await fetch(`${as.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    expect(metadata['issuer']).toBe(as.url);
    expect(metadata['code_challenge_methods_supported']).toEqual(['S256']);
    expect(metadata['response_types_supported']).toEqual(['code']);
    expect(metadata['authorization_response_iss_parameter_supported']).toBe(true);
    expect(metadata['scopes_supported']).toContain('offline_access');
    expect(metadata['grant_types_supported']).toEqual(
      expect.arrayContaining(['authorization_code', 'refresh_token', 'client_credentials']),
    );
    expect(metadata['client_id_metadata_document_supported']).toBe(true);
    expect(metadata['registration_endpoint']).toBe(`${as.url}/reg`);
    expect(metadata['introspection_endpoint']).toBeDefined();
    expect(metadata['revocation_endpoint']).toBeDefined();
    const jwks = (await (await fetch(String(metadata['jwks_uri']))).json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys.length).toBeGreaterThan(0);
    expect(jwks.keys[0]).not.toHaveProperty('d');
  });

  it('issues a JWT access token bound to the resource, with iss in the redirect and a refresh token', async () => {
    const flow = await loginFlow(as);
    expect(flow.callback.searchParams.get('iss')).toBe(as.url);
    expect(flow.first.status).toBe(200);
    const claims = decodeJwt(flow.first.body['access_token']!);
    expect(claims['aud']).toBe(RESOURCE);
    expect(claims['iss']).toBe(as.url);
    expect(claims['sub']).toBe('alice');
    expect(String(claims['scope']).split(' ')).toContain('mcp:tools');
    expect(flow.first.body['refresh_token']).toBeTruthy();
  });

  it('answers code reuse with invalid_grant and revokes the tokens of that grant', async () => {
    const flow = await loginFlow(as);
    const refreshToken = flow.first.body['refresh_token']!;
    const again = await flow.redeem();
    expect(again.status).toBe(400);
    expect(again.body['error']).toBe('invalid_grant');
    const refresh = await token(as, {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: flow.clientId,
    });
    expect(refresh.body['error']).toBe('invalid_grant');
  });

  it('refuses plain PKCE and a missing code challenge', async () => {
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const clientId = String(reg.body['client_id']);
    const redirectUri = 'http://127.0.0.1:4711/callback';
    for (const extra of [
      { code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' },
      { code_challenge: undefined, code_challenge_method: undefined },
    ]) {
      const browser = new Browser();
      const { callback } = await browser.authorize(
        authorizationUrl(as, { clientId, redirectUri, ...extra }),
        redirectUri,
      );
      expect(callback?.searchParams.get('error')).toBe('invalid_request');
      expect(callback?.searchParams.get('code')).toBeNull();
    }
  });

  it('requires the resource parameter', async () => {
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const browser = new Browser();
    const url = authorizationUrl(as, {
      clientId: String(reg.body['client_id']),
      redirectUri,
      challenge: pkce().challenge,
      resource: '',
    });
    const { callback } = await browser.authorize(url, redirectUri);
    expect(callback?.searchParams.get('error')).toBe('invalid_target');
  });

  it('shows an error page, and does not redirect, for an unregistered redirect_uri', async () => {
    const browser = new Browser();
    const url = authorizationUrl(as, {
      clientId: 'web-app',
      redirectUri: 'https://evil.example.com/callback',
      challenge: pkce().challenge,
    });
    const response = await browser.request(url);
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(await response.text()).toContain('redirect_uri');
  });

  it('matches web redirects exactly, and loopback redirects of native clients on any port', async () => {
    const native = await register(as, { redirect_uris: ['http://127.0.0.1/callback'], client_name: 'CLI' });
    expect(native.status).toBe(201);
    expect(native.body['application_type']).toBe('native');
    const nativeId = String(native.body['client_id']);
    const other = 'http://127.0.0.1:53682/callback';
    const { callback } = await new Browser().authorize(
      authorizationUrl(as, { clientId: nativeId, redirectUri: other, challenge: pkce().challenge }),
      other,
    );
    expect(callback?.searchParams.get('code')).toBeTruthy();

    const wrongPath = await new Browser().request(
      authorizationUrl(as, {
        clientId: nativeId,
        redirectUri: 'http://127.0.0.1:5000/other',
        challenge: pkce().challenge,
      }),
    );
    expect(wrongPath.status).toBe(400);

    const web = await register(as, {
      application_type: 'web',
      redirect_uris: ['https://app.example.com/cb', 'http://localhost:3000/cb'],
    });
    expect(web.status).toBe(201);
    const webOtherPort = await new Browser().request(
      authorizationUrl(as, {
        clientId: String(web.body['client_id']),
        redirectUri: 'http://localhost:3001/cb',
        challenge: pkce().challenge,
      }),
    );
    expect(webOtherPort.status).toBe(400);
  });

  it('treats DCR with custom-scheme redirects as native, and refuses unsafe redirect URIs at registration', async () => {
    const custom = await register(as, { redirect_uris: ['cursor://anysphere.cursor-retrieval/oauth/callback'] });
    expect(custom.status).toBe(201);
    expect(custom.body['application_type']).toBe('native');
    for (const bad of [
      'http://app.example.com/cb',
      'javascript:alert(1)',
      'https://app.example.com/cb#frag',
      'https://*.example.com/cb',
    ]) {
      const reg = await register(as, { redirect_uris: [bad] });
      expect(reg.status, bad).toBe(400);
      expect(['invalid_redirect_uri', 'invalid_client_metadata']).toContain(reg.body['error']);
    }
  });

  it('answers 401 invalid_client at the token endpoint for an unknown client', async () => {
    const response = await token(as, {
      grant_type: 'authorization_code',
      code: 'nope',
      redirect_uri: 'http://127.0.0.1:4711/callback',
      code_verifier: 'x'.repeat(43),
      client_id: 'no-such-client',
    });
    expect(response.status).toBe(401);
    expect(response.body['error']).toBe('invalid_client');
  });

  it('issues client_credentials tokens for a resource', async () => {
    const response = await token(
      as,
      { grant_type: 'client_credentials', resource: RESOURCE, scope: 'mcp:tools' },
      { id: 'service', secret: 'service-secret-value-long-enough' },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(decodeJwt(response.body['access_token']!)['aud']).toBe(RESOURCE);
    const wrong = await token(
      as,
      { grant_type: 'client_credentials', resource: RESOURCE },
      { id: 'service', secret: 'wrong-secret-value-long-enough!!' },
    );
    expect(wrong.status).toBe(401);
  });

  it('introspects and revokes refresh tokens', async () => {
    const flow = await loginFlow(as);
    const refreshToken = flow.first.body['refresh_token']!;
    const auth = { id: 'service', secret: 'service-secret-value-long-enough' };
    const introspect = async () => {
      const response = await fetch(`${as.url}/token/introspection`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${auth.id}:${auth.secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ token: refreshToken }),
      });
      return (await response.json()) as Record<string, unknown>;
    };
    expect((await introspect())['active']).toBeDefined();
    const revoke = await fetch(`${as.url}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: refreshToken, client_id: flow.clientId }),
    });
    expect(revoke.status).toBe(200);
    const after = await token(as, {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: flow.clientId,
    });
    expect(after.body['error']).toBe('invalid_grant');
  });

  it('escapes the client name, shows the redirect host on the consent page, and refuses framing', async () => {
    const browser = new Browser();
    await browser.authorize(
      authorizationUrl(as, {
        clientId: 'web-app',
        redirectUri: 'https://app.example.com/callback',
        challenge: pkce().challenge,
      }),
      'https://app.example.com/callback',
    );
    const consent = browser.pages.find((p) => p.kind === 'consent');
    expect(consent?.html).toContain('Web &lt;App&gt; &amp; &quot;friends&quot;');
    expect(consent?.html).not.toContain('<App>');
    expect(consent?.html).toContain('app.example.com');
    expect(consent?.html).toContain('mcp:tools');
  });

  it('rejects a login form post without the CSRF token', async () => {
    const browser = new Browser();
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const url = authorizationUrl(as, {
      clientId: String(reg.body['client_id']),
      redirectUri: 'http://127.0.0.1:4711/callback',
      challenge: pkce().challenge,
    });
    const first = await browser.request(url);
    const interaction = new URL(first.headers.get('location')!, url);
    const page = await browser.request(interaction);
    // The login page may not be framed (clickjacking) nor cached.
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('cache-control')).toBe('no-store');
    const post = await browser.request(new URL(`${interaction.pathname}/login`, url), {
      method: 'POST',
      body: new URLSearchParams({ username: 'alice', password: 'wonderland' }),
    });
    expect(post.status).toBe(403);
  });
});

describe('client ID metadata documents', () => {
  let as: ServedAs;
  beforeAll(async () => {
    as = await startServedAs();
  });
  afterAll(() => as.close());

  it('refuses a client_id document on a private or loopback address before fetching it', async () => {
    let fetched = 0;
    const target = createServer((_req, res) => {
      fetched++;
      res.end('{}');
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const port = (target.address() as AddressInfo).port;
    try {
      for (const clientId of [
        `https://127.0.0.1:${port}/client.json`,
        'https://10.0.0.7/client.json',
        'https://169.254.169.254/latest/meta-data',
        'https://localhost/client.json',
      ]) {
        const redirectUri = 'http://127.0.0.1:4711/callback';
        const response = await new Browser().request(
          authorizationUrl(as, { clientId, redirectUri, challenge: pkce().challenge }),
        );
        expect(response.status, clientId).toBe(400);
        expect(response.headers.get('location')).toBeNull();
        expect(await response.text()).toContain('invalid_client');
      }
      expect(fetched).toBe(0);
    } finally {
      target.close();
    }
  });
});

describe('behind a TLS proxy (https issuer)', () => {
  let as: ServedAs;
  beforeAll(async () => {
    as = await startServedAs({ proxy: true }, ['--issuer', 'https://auth.example.com']);
  });
  afterAll(() => as.close());

  it('uses __Host- and __Secure- cookies, marked Secure', async () => {
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const url = authorizationUrl(as, {
      clientId: String(reg.body['client_id']),
      redirectUri: 'http://127.0.0.1:4711/callback',
      challenge: pkce().challenge,
    });
    const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'auth.example.com' };
    const start = await fetch(url, { headers: forwarded, redirect: 'manual' });
    expect(start.status).toBe(303);
    const cookies = start.headers.getSetCookie();
    const interaction = cookies.find((c) => c.startsWith('__Secure-gh_interaction='));
    expect(interaction).toMatch(/secure/i);
    expect(interaction).toMatch(/httponly/i);
    const jar = cookies.map((c) => c.split(';')[0]).join('; ');
    const location = new URL(start.headers.get('location')!, 'https://auth.example.com');
    const loginPage = await fetch(`${as.url}${location.pathname}`, { headers: { ...forwarded, cookie: jar } });
    const html = await loginPage.text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
    const login = await fetch(`${as.url}${location.pathname}/login`, {
      method: 'POST',
      headers: { ...forwarded, cookie: jar, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: csrf!, username: 'alice', password: 'wonderland' }),
      redirect: 'manual',
    });
    expect(login.status).toBe(303);
    const next = new URL(login.headers.get('location')!, 'https://auth.example.com');
    const resumed = await fetch(`${as.url}${next.pathname}${next.search}`, {
      headers: { ...forwarded, cookie: [jar, ...login.headers.getSetCookie().map((c) => c.split(';')[0])].join('; ') },
      redirect: 'manual',
    });
    const session = login.headers
      .getSetCookie()
      .concat(resumed.headers.getSetCookie())
      .find((c) => c.startsWith('__Host-gh_session='));
    expect(session).toMatch(/secure/i);
    expect(session).toMatch(/path=\//i);
    expect(session).not.toMatch(/domain=/i);
  });
});
