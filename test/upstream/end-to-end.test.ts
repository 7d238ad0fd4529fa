import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { githubUpstream, oidcUpstream } from '../../src/authorization-server/upstream/index.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { Client, OAuth } from '../../src/client/index.js';
import { authorizationUrl, pkce, register } from '../authorization-server/helpers.js';
import { type GithubDouble, startGithubDouble } from './github-double.js';
import { clock } from './helpers.js';
import { type OidcDouble, startOidcDouble } from './oidc-double.js';
import { startUpstreamStack, type UpstreamMe, type UpstreamStack } from './stack.js';

/** Every stored value of the upstream engine, as the store holds it. */
function rawValues(stack: UpstreamStack): string {
  return [...stack.setup.raw.values()].map((entry) => JSON.stringify(entry)).join('\n');
}

async function callMe(stack: UpstreamStack, oauth: OAuth): Promise<UpstreamMe> {
  await using client = new Client(stack.mcpUrl, { auth: oauth });
  return (await client.callTool<UpstreamMe>('upstream_me')).data;
}

describe('MCP client → Gatehouse → GitHub (GitHub-shaped double): login, delegated access, refresh, revocation', () => {
  const time = clock();
  let gh: GithubDouble;
  let stack: UpstreamStack;

  beforeAll(async () => {
    gh = await startGithubDouble({
      clientId: 'gh',
      clientSecret: 'gh-secret',
      users: [
        {
          id: 31337,
          login: 'octocat',
          password: 'hunter2',
          emails: [{ email: 'octocat@example.com', primary: true, verified: true }],
        },
        { id: 2, login: 'denier', password: 'pw' },
      ],
      denyingUsers: ['denier'],
      accessTokenTtl: 3600,
      now: time.now,
    });
    stack = await startUpstreamStack({
      upstream: () => ({
        providers: [
          githubUpstream({ clientId: 'gh', clientSecret: 'gh-secret', baseUrl: gh.url, apiBaseUrl: gh.apiUrl }),
          // A second upstream the users never link, to see "not linked" as a resource error.
          githubUpstream({
            name: 'ghe',
            displayName: 'GitHub Enterprise',
            clientId: 'gh',
            clientSecret: 'gh-secret',
            baseUrl: gh.url,
            apiBaseUrl: gh.apiUrl,
          }),
        ],
        resources: [
          { resource: gh.apiUrl, upstream: 'github' },
          { resource: `${gh.apiUrl}/repos`, upstream: 'github', scopes: ['repo'] },
          { resource: `${gh.url}/enterprise`, upstream: 'ghe' },
        ],
        apiResource: gh.apiUrl,
        userEndpoint: `${gh.apiUrl}/user`,
        extraTargets: [`${gh.apiUrl}/repos`, `${gh.url}/enterprise`],
      }),
      autoUpstream: 'github',
      now: time.now,
    });
  });
  afterAll(async () => {
    await stack?.close();
    await gh?.close();
  });

  it('logs in through GitHub headlessly, and the tool reads GitHub with the user’s token; refreshed when expired; a revoked one is a resource error', async () => {
    const oauth = new OAuth({
      tokenStorage: 'memory',
      mcpUrl: stack.mcpUrl,
      login: { username: 'octocat', password: 'hunter2' },
    });
    const first = await callMe(stack, oauth);
    expect(first).toMatchObject({ ok: true, user: { login: 'octocat', id: 31337 } });

    // The Gatehouse token names the local subject; no upstream token anywhere the MCP client or logs can see.
    const [user] = await stack.setup.identity.accounts.list();
    const tokens = await oauth.tokens();
    expect(decodeJwt(tokens!.access_token).sub).toBe(user!.subject);
    // How the user signed in (RFC 9470 acr): through the upstream named github.
    expect(decodeJwt(tokens!.access_token)['acr']).toBe('urn:gatehouse:acr:upstream:github');
    const upstreamToken = (await stack.setup.identity.getUpstreamAccessToken(user!.subject, 'github')).access_token;
    expect(gh.liveAccessTokens()).toContain(upstreamToken);
    const clientSide = JSON.stringify(tokens) + JSON.stringify(await oauth.clientInformation());
    const logs = stack.asLogs.text() + stack.setup.logs.text();
    const stored = rawValues(stack);
    for (const live of gh.liveAccessTokens()) {
      expect(clientSide).not.toContain(live);
      expect(logs).not.toContain(live);
      expect(stored).not.toContain(live); // ciphertext only
    }
    // The vault entry is there, and every stored value is a JWE (dir, A256GCM).
    expect([...stack.setup.raw.keys()].some((key) => key.includes(`tokens:${user!.subject}:github`))).toBe(true);
    for (const entry of stack.setup.raw.values())
      expect(JSON.stringify(entry)).toMatch(/^\{"json":"\\"eyJhbGciOiJkaXIi/);

    // A scope the upstream token lacks, and an upstream the user never linked: resource errors naming the link URL.
    const access = await stack.exchanger.exchangeAll(tokens!.access_token, [
      gh.apiUrl,
      `${gh.apiUrl}/repos`,
      `${gh.url}/enterprise`,
    ]);
    expect(access.getStatus()).toBe('partial_error');
    expect(access.getResourceError(`${gh.apiUrl}/repos`)).toMatchObject({ error: 'invalid_scope', status: 400 });
    expect(access.getResourceError(`${gh.apiUrl}/repos`)!.message).toContain(
      `${stack.issuer}/upstream/github/link?scope=repo`,
    );
    expect(access.getResourceError(`${gh.url}/enterprise`)).toMatchObject({ error: 'invalid_grant' });
    expect(access.getResourceError(`${gh.url}/enterprise`)!.message).toContain(`${stack.issuer}/upstream/ghe/link`);

    // Only the policy's client may get upstream tokens: a public client cannot exchange at all.
    const publicTry = await fetch(`${stack.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: tokens!.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        resource: gh.apiUrl,
        client_id: (await oauth.clientInformation())!.client_id,
      }),
    });
    expect(publicTry.status).toBeGreaterThanOrEqual(400);
    expect(publicTry.status).toBeLessThan(500);
    expect(await publicTry.text()).not.toContain(upstreamToken);

    // Expired upstream token: refreshed on the way, transparently for the tool.
    time.advance(3700);
    stack.exchanger.clear();
    const refreshes = gh.tokenRequests.filter((r) => r.grantType === 'refresh_token').length;
    const second = await callMe(stack, oauth);
    expect(second).toMatchObject({ ok: true, user: { login: 'octocat' } });
    expect(gh.tokenRequests.filter((r) => r.grantType === 'refresh_token').length).toBe(refreshes + 1);
    const refreshed = (await stack.setup.identity.getUpstreamAccessToken(user!.subject, 'github')).access_token;
    expect(refreshed).not.toBe(upstreamToken);

    // Revoked at GitHub and expired: a resource error with the link URL in the AccessContext, not a 500.
    gh.revokeAll('octocat');
    time.advance(3700);
    stack.exchanger.clear();
    const third = await callMe(stack, oauth);
    expect(third.ok).toBe(false);
    expect(third.error).toMatchObject({ error: 'invalid_grant', status: 400 });
    expect(third.error!.message).toContain(`${stack.issuer}/upstream/github/link`);
    // The link page needs the user's Gatehouse session; without one it says how to grant GitHub again.
    const link = await fetch(`${stack.issuer}/upstream/github/link`);
    expect(link.status).toBe(401);
    expect(await link.text()).toContain('Sign in with GitHub');
    expect(stack.asLogs.text()).not.toContain('server error');
  });

  it('answers the MCP client with access_denied (and shows a page saying why) when the user declines at GitHub', async () => {
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const reg = await register({ url: stack.issuer }, { redirect_uris: [redirectUri] });
    const { challenge } = pkce();
    const url = authorizationUrl(
      { url: stack.issuer },
      { clientId: String(reg.body['client_id']), redirectUri, challenge, resource: stack.mcpUrl, scope: 'mcp:tools' },
    );
    const pages: string[] = [];
    const recording: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (String(input).includes('/upstream/callback') && response.status === 400)
        pages.push(await response.clone().text());
      return response;
    };
    const callback = await headlessAuthorize(url, redirectUri, { username: 'denier', password: 'pw' }, recording);
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('error_description')).toContain('GitHub answered access_denied');
    expect(callback.searchParams.get('iss')).toBe(stack.issuer);
    expect(pages.join('')).toContain('You declined the request at GitHub');
  });

  it('refuses a forged callback at the fixed redirect URI with a page', async () => {
    const response = await fetch(`${stack.issuer}/upstream/callback?code=stolen&state=forged`, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('expired or was already used');
  });
});

describe('MCP client → Gatehouse → a second oidc-provider as the upstream OIDC IdP', () => {
  const time = clock();
  let idp: OidcDouble;
  let stack: UpstreamStack;

  beforeAll(async () => {
    stack = await startUpstreamStack({
      upstream: async (issuer) => {
        idp = await startOidcDouble({
          clientId: 'gatehouse',
          clientSecret: 'gatehouse-upstream-secret-of-enough-length',
          redirectUri: `${issuer}/upstream/callback`,
        });
        return {
          providers: [
            oidcUpstream({
              name: 'corp',
              displayName: 'Corp SSO',
              issuer: idp.url,
              clientId: 'gatehouse',
              clientSecret: 'gatehouse-upstream-secret-of-enough-length',
              scopes: ['openid', 'email', 'profile', 'offline_access'],
            }),
          ],
          resources: [{ resource: `${idp.url}/me`, upstream: 'corp' }],
          apiResource: `${idp.url}/me`,
          userEndpoint: `${idp.url}/me`,
        };
      },
      now: time.now,
    });
  });
  afterAll(async () => {
    await stack?.close();
    await idp?.close();
  });

  it('logs in through the IdP headlessly; the tool reads userinfo with the user’s token, refreshed when expired', async () => {
    const oauth = new OAuth({
      tokenStorage: 'memory',
      mcpUrl: stack.mcpUrl,
      login: { username: 'alice', password: 'x' },
    });
    const first = await callMe(stack, oauth);
    expect(first).toMatchObject({ ok: true, user: { sub: 'alice', email: 'alice@example.com' } });
    const [user] = await stack.setup.identity.accounts.list();
    expect(user!.identities[0]).toMatchObject({ upstream: 'corp', upstreamSubject: 'alice' });
    const tokens = await oauth.tokens();
    const claims = decodeJwt(tokens!.access_token);
    expect(claims.sub).toBe(user!.subject);
    const upstreamToken = (await stack.setup.identity.getUpstreamAccessToken(user!.subject, 'corp')).access_token;
    expect(JSON.stringify(tokens)).not.toContain(upstreamToken);
    expect(JSON.stringify(claims)).not.toContain(upstreamToken);
    expect(stack.asLogs.text() + stack.setup.logs.text()).not.toContain(upstreamToken);
    expect(rawValues(stack)).not.toContain(upstreamToken);

    time.advance(3700);
    stack.exchanger.clear();
    const second = await callMe(stack, oauth);
    expect(second).toMatchObject({ ok: true, user: { sub: 'alice' } });
    const refreshed = (await stack.setup.identity.getUpstreamAccessToken(user!.subject, 'corp')).access_token;
    expect(refreshed).not.toBe(upstreamToken);
    time.advance(-3700);
  });

  it('deletes the user’s upstream tokens when their Gatehouse grant is revoked', async () => {
    const oauth = new OAuth({
      tokenStorage: 'memory',
      mcpUrl: stack.mcpUrl,
      login: { username: 'bob', password: 'x' },
    });
    expect(await callMe(stack, oauth)).toMatchObject({ ok: true, user: { sub: 'bob' } });
    const bob = (await stack.setup.identity.accounts.list()).find((u) => u.identities[0]?.upstreamSubject === 'bob')!;
    await stack.setup.identity.getUpstreamAccessToken(bob.subject, 'corp');
    const tokens = (await oauth.tokens())!;
    expect(tokens.refresh_token).toBeTruthy();
    const info = await oauth.clientInformation();
    const revoke = await fetch(`${stack.issuer}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        token: tokens.refresh_token!,
        token_type_hint: 'refresh_token',
        client_id: info!.client_id,
      }),
    });
    expect(revoke.status).toBe(200);
    await expect
      .poll(() => stack.setup.identity.getUpstreamAccessToken(bob.subject, 'corp').catch((e) => e.reason))
      .toBe('not_linked');
  });
});
