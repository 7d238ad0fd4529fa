import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.js';
import {
  authorizationUrl,
  decodeJwt,
  pkce,
  RESOURCE,
  register,
  type ServedAs,
  startServedAs,
  token,
  USER,
} from './helpers.js';

const ARTIFACTS = join('test-artifacts', 'authorization-server-browser');

describe('login and consent in a real browser', () => {
  let as: ServedAs;
  let browser: Browser;
  let callbackServer: Server;
  let callbackUrl: string;
  const received: URL[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    as = await startServedAs();
    callbackServer = createServer((req, res) => {
      received.push(new URL(req.url ?? '/', callbackUrl));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>Signed in</title><h1>Signed in. You can close this window.</h1>');
    });
    await new Promise<void>((resolve) => callbackServer.listen(0, '127.0.0.1', resolve));
    callbackUrl = `http://127.0.0.1:${(callbackServer.address() as AddressInfo).port}/callback`;
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    callbackServer?.close();
    await as?.close();
  });

  it('logs in, shows the consent page with the client name and redirect host, and the client gets tokens', {
    timeout: 60_000,
  }, async () => {
    const reg = await register(as, { redirect_uris: [callbackUrl], client_name: 'Browser Test Client' });
    expect(reg.status).toBe(201);
    const clientId = String(reg.body['client_id']);
    const { verifier, challenge } = pkce();
    const url = authorizationUrl(as, { clientId, redirectUri: callbackUrl, challenge });

    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url.href);

    await expect.poll(() => page.title()).toBe('Sign in');
    expect(await page.locator('main').innerText()).toContain('Browser Test Client');
    await page.screenshot({ path: join(ARTIFACTS, '1-login.png'), fullPage: true });
    await page.getByLabel('Username').fill(USER.username);
    await page.getByLabel('Password').fill(USER.password);
    await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);

    await expect.poll(() => page.title()).toBe('Authorize access');
    const consent = await page.locator('main').innerText();
    expect(consent).toContain('Browser Test Client');
    expect(consent).toContain(new URL(callbackUrl).host);
    expect(consent).toContain('mcp:tools');
    await page.screenshot({ path: join(ARTIFACTS, '2-consent.png'), fullPage: true });
    await Promise.all([page.waitForURL(/\/callback\?/), page.getByRole('button', { name: 'Approve' }).click()]);
    await page.screenshot({ path: join(ARTIFACTS, '3-callback.png'), fullPage: true });
    await context.close();

    const callback = received.find((u) => u.pathname === '/callback' && u.searchParams.has('code'))!;
    expect(callback.searchParams.get('iss')).toBe(as.url);
    const tokens = await token(as, {
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code')!,
      redirect_uri: callbackUrl,
      code_verifier: verifier,
      client_id: clientId,
      resource: RESOURCE,
    });
    expect(tokens.status).toBe(200);
    expect(decodeJwt(tokens.body['access_token']!)['aud']).toBe(RESOURCE);
    for (const name of ['1-login.png', '2-consent.png', '3-callback.png'])
      expect(existsSync(join(ARTIFACTS, name))).toBe(true);
  });
});
