import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { githubUpstream } from '../../src/authorization-server/upstream/index.js';
import { staticUsers } from '../../src/authorization-server/users.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { authorizationUrl, decodeJwt, pkce, register, token } from '../authorization-server/helpers.js';
import { launchChromium } from '../helpers/chromium.js';
import { type GithubDouble, startGithubDouble } from './github-double.js';
import { startUpstreamStack, type UpstreamStack } from './stack.js';

const ARTIFACTS = join('test-artifacts', 'upstream-browser');

describe('a login page with local users and a GitHub upstream', () => {
  let gh: GithubDouble;
  let stack: UpstreamStack;
  let browser: Browser | undefined;
  let callbackServer: Server;
  let callbackUrl: string;
  const received: URL[] = [];

  beforeAll(async () => {
    gh = await startGithubDouble({
      clientId: 'gh',
      clientSecret: 'gh-secret',
      users: [
        {
          id: 4242,
          login: 'mona',
          password: 'lisa-password',
          emails: [{ email: 'mona@example.com', primary: true, verified: true }],
        },
        { id: 5, login: 'nope', password: 'nope-password' },
        { id: 6, login: 'alice-gh', password: 'alice-gh-password' },
      ],
      denyingUsers: ['nope'],
    });
    stack = await startUpstreamStack({
      upstream: () => ({
        providers: [
          githubUpstream({ clientId: 'gh', clientSecret: 'gh-secret', baseUrl: gh.url, apiBaseUrl: gh.apiUrl }),
        ],
        resources: [{ resource: gh.apiUrl, upstream: 'github' }],
        apiResource: gh.apiUrl,
        userEndpoint: `${gh.apiUrl}/user`,
      }),
      authenticator: await staticUsers({ alice: 'wonderland' }),
      localLogin: true,
    });
    callbackServer = createServer((req, res) => {
      received.push(new URL(req.url ?? '/', callbackUrl));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>Signed in</title><h1>Signed in. You can close this window.</h1>');
    });
    await new Promise<void>((resolve) => callbackServer.listen(0, '127.0.0.1', resolve));
    callbackUrl = `http://127.0.0.1:${(callbackServer.address() as AddressInfo).port}/callback`;
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    callbackServer?.close();
    await stack?.close();
    await gh?.close();
  });

  const start = async (clientName: string, extra: Record<string, string> = {}) => {
    const reg = await register({ url: stack.issuer }, { redirect_uris: [callbackUrl], client_name: clientName });
    const clientId = String(reg.body['client_id']);
    const { verifier, challenge } = pkce();
    const url = authorizationUrl(
      { url: stack.issuer },
      { clientId, redirectUri: callbackUrl, challenge, resource: stack.mcpUrl, scope: 'mcp:tools', ...extra },
    );
    const redeem = (code: string) =>
      token(
        { url: stack.issuer },
        {
          grant_type: 'authorization_code',
          code,
          redirect_uri: callbackUrl,
          code_verifier: verifier,
          client_id: clientId,
          resource: stack.mcpUrl,
        },
      );
    return { url, redeem };
  };

  it('shows "Sign in with GitHub" (escaped link) beside the password form; headless posts the local form', async () => {
    const { url, redeem } = await start('Local <b>client</b>');
    const first = await fetch(url, { redirect: 'manual' });
    const interaction = new URL(first.headers.get('location')!, stack.issuer);
    const cookie = first.headers
      .getSetCookie()
      .map((c) => c.split(';')[0])
      .join('; ');
    const page = await fetch(interaction, { headers: { cookie } });
    const html = await page.text();
    expect(html).toContain(`href="${interaction.pathname}/upstream/github">Sign in with GitHub</a>`);
    expect(html).toContain('type="password"');
    expect(html).toContain('Local &lt;b&gt;client&lt;/b&gt;');

    const callback = await headlessAuthorize(url, callbackUrl, { username: 'alice', password: 'wonderland' });
    const tokens = await redeem(callback.searchParams.get('code')!);
    expect(decodeJwt(tokens.body['access_token']!)['sub']).toBe('alice');
  });

  it('follows upstream=github on the authorization request straight to GitHub (headless on both hops)', async () => {
    const { url, redeem } = await start('Chooser', { upstream: 'github' });
    const callback = await headlessAuthorize(url, callbackUrl, { username: 'mona', password: 'lisa-password' });
    const tokens = await redeem(callback.searchParams.get('code')!);
    expect(tokens.status).toBe(200);
    expect(String(decodeJwt(tokens.body['access_token']!)['sub'])).toMatch(/^u_/);
  });

  it('links GitHub to a signed-in local user at /upstream/github/link?scope=…, bound to the browser', async () => {
    // A cookie jar for Gatehouse's origin, shared by both headless runs (as one browser would).
    const jar = new Map<string, string>();
    const browserFetch: typeof fetch = async (input, init) => {
      const url = new URL(String(input));
      const headers = new Headers(init?.headers);
      if (url.origin === stack.issuer && jar.size) {
        const own = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
        headers.set('cookie', [headers.get('cookie'), own].filter(Boolean).join('; '));
      }
      const response = await fetch(input, { ...init, headers });
      if (url.origin === stack.issuer) {
        for (const line of response.headers.getSetCookie()) {
          const [pair] = line.split(';');
          const eq = pair!.indexOf('=');
          jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
        }
      }
      return response;
    };
    const { url } = await start('Linker');
    await headlessAuthorize(url, callbackUrl, { username: 'alice', password: 'wonderland' }, browserFetch);
    expect([...jar.keys()]).toContain('gh_session');

    const upstreamCallback = await headlessAuthorize(
      new URL(`${stack.issuer}/upstream/github/link?scope=repo`),
      `${stack.issuer}/upstream/callback`,
      { username: 'alice-gh', password: 'alice-gh-password' },
      browserFetch,
    );
    // Another browser (no link cookie) cannot finish it.
    const stranger = await fetch(upstreamCallback, { redirect: 'manual' });
    expect(stranger.status).toBe(400);
    const done = await browserFetch(upstreamCallback, { redirect: 'manual' });
    const body = await done.text();
    expect(done.status, body).toBe(200);
    expect(body).toContain('GitHub is connected');

    const alice = await stack.setup.identity.findAccount('alice');
    expect(alice?.user.identities).toMatchObject([{ upstream: 'github', username: 'alice-gh' }]);
    const upstreamToken = await stack.setup.identity.getUpstreamAccessToken('alice', 'github');
    expect(upstreamToken.scope).toContain('repo');

    // Without a Gatehouse session the page explains what to do.
    const anonymous = await fetch(`${stack.issuer}/upstream/github/link`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).toContain('Sign in with GitHub');
  });

  it('in Chromium: the GitHub button, GitHub’s login, then Gatehouse consent, and the client gets tokens', {
    timeout: 90_000,
  }, async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await launchChromium();
    const { url, redeem } = await start('Browser MCP Client');
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url.href);
    await expect.poll(() => page.title()).toBe('Sign in');
    const button = page.getByRole('link', { name: 'Sign in with GitHub' });
    expect(await button.isVisible()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, '1-login-with-upstream.png'), fullPage: true });

    await Promise.all([page.waitForURL(/\/login\/oauth\/authorize/), button.click()]);
    await page.locator('input[name=login]').fill('mona');
    await page.locator('input[name=password]').fill('lisa-password');
    await page.screenshot({ path: join(ARTIFACTS, '2-upstream-login.png'), fullPage: true });
    await Promise.all([
      page.waitForURL(/\/interaction\/[^/]+$/),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);

    await expect.poll(() => page.title()).toBe('Authorize access');
    const consent = await page.locator('main').innerText();
    expect(consent).toContain('Browser MCP Client');
    expect(consent).toContain('mcp:tools');
    await page.screenshot({ path: join(ARTIFACTS, '3-consent.png'), fullPage: true });
    await Promise.all([page.waitForURL(/\/callback\?/), page.getByRole('button', { name: 'Approve' }).click()]);
    await page.screenshot({ path: join(ARTIFACTS, '4-callback.png'), fullPage: true });
    await context.close();

    const callback = received.find((u) => u.searchParams.has('code') && !u.searchParams.has('error'))!;
    expect(callback.searchParams.get('iss')).toBe(stack.issuer);
    const tokens = await redeem(callback.searchParams.get('code')!);
    expect(tokens.status).toBe(200);
    const [mona] = (await stack.setup.identity.accounts.list()).filter((u) =>
      u.identities.some((i) => i.username === 'mona'),
    );
    expect(decodeJwt(tokens.body['access_token']!)['sub']).toBe(mona!.subject);
    for (const name of ['1-login-with-upstream.png', '2-upstream-login.png', '3-consent.png', '4-callback.png'])
      expect(existsSync(join(ARTIFACTS, name))).toBe(true);
  });

  it('in Chromium: declining at GitHub shows a page saying so, and the client gets access_denied (never a forged error)', {
    timeout: 90_000,
  }, async () => {
    browser ??= await launchChromium();
    const { url } = await start('Declined Client');
    // bypassCSP only so the test can tamper with the hidden error field below.
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    await page.goto(url.href);
    await Promise.all([
      page.waitForURL(/\/login\/oauth\/authorize/),
      page.getByRole('link', { name: 'Sign in with GitHub' }).click(),
    ]);
    await page.locator('input[name=login]').fill('nope');
    await page.locator('input[name=password]').fill('nope-password');
    await Promise.all([page.waitForURL(/\/upstream\/callback/), page.getByRole('button', { name: 'Sign in' }).click()]);
    await expect.poll(() => page.title()).toBe('Sign-in failed');
    expect(await page.locator('main').innerText()).toContain('You declined the request at GitHub');
    await page.screenshot({ path: join(ARTIFACTS, '5-upstream-declined.png'), fullPage: true });
    await page.locator('input[name=error]').evaluate((input) => {
      (input as HTMLInputElement).value = 'invalid_client';
    });
    await Promise.all([
      page.waitForURL(/\/callback\?/),
      page.getByRole('button', { name: 'Back to the application' }).click(),
    ]);
    await context.close();
    const callback = received.filter((u) => u.pathname === '/callback').at(-1)!;
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('error_description')).toContain('GitHub answered access_denied');
    expect(callback.searchParams.get('iss')).toBe(stack.issuer);
  });
});
