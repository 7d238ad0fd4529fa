import { mkdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/authorization-server/users.js';
import { type ServeProcess, startServe } from '../cli/helpers.js';
import { axeViolations, blocking } from '../helpers/axe.js';
import { launchChromium } from '../helpers/chromium.js';
import { authorizationUrl, type DocumentHost, decodeJwt, pkce, register, startDocumentHost, token } from './helpers.js';

// The CIMD document host has a self-signed certificate; the `gatehouse serve` child is told to trust it.
const ARTIFACTS = join('test-artifacts', 'pages');
const FILES = 'http://127.0.0.1:8301/mcp';
const TOOLS = 'http://127.0.0.1:8302/mcp';
const HOSTILE = '<img src=x onerror="document.title=\'pwned\'"> Evil & "Co" <b>client</b>';
const LOGO =
  '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" rx="8" fill="#2454d6"/><text x="60" y="26" font-family="sans-serif" font-size="16" fill="#fff" text-anchor="middle">Acme</text></svg>';

async function expectAccessible(page: Page, name: string): Promise<void> {
  const violations = await axeViolations(page);
  expect(blocking(violations), `${name}: ${JSON.stringify(violations, null, 2)}`).toEqual([]);
}

describe('login and consent pages say who is asking (gatehouse serve, Chromium, axe-core)', () => {
  let serve: ServeProcess;
  let browser: Browser;
  let site: Server;
  let origin: string;
  let dir: string;
  let host: DocumentHost;
  const callbacks: URL[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-pages-'));
    // One loopback site: the client's redirect URI and the service's logo.
    site = createServer((req, res) => {
      if (req.url === '/logo.svg') {
        res.writeHead(200, { 'content-type': 'image/svg+xml' });
        res.end(LOGO);
        return;
      }
      callbacks.push(new URL(req.url ?? '/', origin));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><html lang="en"><title>Signed in</title><main><h1>Signed in</h1></main></html>');
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    host = await startDocumentHost();

    const users = join(dir, 'users.json');
    await writeFile(
      users,
      JSON.stringify({
        users: [
          { username: 'alice', passwordHash: await hashPassword('wonderland') },
          { username: 'bob', passwordHash: await hashPassword('builder-bob') },
        ],
      }),
    );
    const config = join(dir, 'gatehouse.json');
    await writeFile(
      config,
      JSON.stringify({
        users,
        resources: [
          {
            resource: FILES,
            name: 'Acme Files',
            scopes: [
              { name: 'files:read', description: 'Read your files and folders' },
              { name: 'files:write', description: 'Create, change and delete your files' },
            ],
          },
          { resource: TOOLS, scopes: ['mcp:tools'] },
        ],
        clientIdMetadataDocument: { allowPrivateNetworks: true },
      }),
    );
    serve = await startServe(
      ['--store', 'memory', '--config', config, '--name', 'Acme & Co MCP', '--logo', `${origin}/logo.svg`],
      { NODE_TLS_REJECT_UNAUTHORIZED: '0' },
    );
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await serve?.stop();
    site?.close();
    host?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('names the service, the client (escaped), the servers, the scopes and the account; "not you?" switches account', {
    timeout: 90_000,
  }, async () => {
    const redirectUri = `${origin}/callback`;
    const reg = await register(
      { url: serve.url },
      { redirect_uris: [redirectUri], client_name: HOSTILE, client_uri: 'https://evil.example/about' },
    );
    expect(reg.status, JSON.stringify(reg.body)).toBe(201);
    const clientId = String(reg.body['client_id']);
    const { verifier, challenge } = pkce();
    const url = authorizationUrl(
      { url: serve.url },
      {
        clientId,
        redirectUri,
        challenge,
        resource: FILES,
        scope: 'openid files:read files:write',
      },
    );
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url.href);

    // Login: the service's name and logo, the client's name as text.
    await expect.poll(() => page.title()).toBe('Sign in – Acme & Co MCP');
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Sign in to Acme & Co MCP');
    const logo = page.getByRole('img', { name: 'Acme & Co MCP logo' });
    await expect.poll(() => logo.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBe(120);
    const login = await page.locator('main').innerText();
    expect(login).toContain(`to continue to ${HOSTILE}`);
    expect(await page.locator('main img').count()).toBe(1); // the logo only: the client's <img> is text
    expect(await page.locator('main b').count()).toBe(0);
    await expectAccessible(page, 'login');
    await page.screenshot({ path: join(ARTIFACTS, '1-login.png'), fullPage: true });

    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('wonderland');
    await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);

    // Consent: the client, the server with its display name and URL, each scope described, the account.
    await expect.poll(() => page.title()).toBe('Authorize access');
    const consent = await page.locator('main').innerText();
    expect(consent).toContain(`Authorize ${HOSTILE}`);
    expect(consent).toContain('https://evil.example/about');
    expect(consent).toContain('Acme Files');
    expect(consent).toContain(FILES);
    expect(consent).toContain('Read your files and folders files:read');
    expect(consent).toContain('Create, change and delete your files files:write');
    expect(consent.match(/files:read/g)).toHaveLength(1);
    expect(consent).toContain('Know your account identifier openid'); // a standard scope, described without config
    expect(consent).toContain('Signed in as alice');
    expect(consent).toContain(new URL(redirectUri).host);
    expect(await page.locator('main img').count()).toBe(1);
    expect(await page.title()).not.toBe('pwned');
    await expectAccessible(page, 'consent');
    await page.screenshot({ path: join(ARTIFACTS, '2-consent.png'), fullPage: true });

    // "Not you?": the same request asks for a new sign-in; bob signs in and sees himself on the consent page.
    await Promise.all([
      page.waitForURL(/\/interaction\//),
      page.getByRole('link', { name: 'Not you? Sign in as someone else' }).click(),
    ]);
    await expect.poll(() => page.title()).toBe('Sign in – Acme & Co MCP');
    await page.getByLabel('Username').fill('bob');
    await page.getByLabel('Password').fill('builder-bob');
    await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);
    await expect.poll(() => page.title()).toBe('Authorize access');
    expect(await page.locator('main').innerText()).toContain('Signed in as bob');
    await Promise.all([page.waitForURL(/\/callback\?/), page.getByRole('button', { name: 'Approve' }).click()]);
    await context.close();

    const callback = callbacks.find((u) => u.searchParams.has('code'))!;
    expect(callback.searchParams.get('state')).toBe(url.searchParams.get('state'));
    const tokens = await token(
      { url: serve.url },
      {
        grant_type: 'authorization_code',
        code: callback.searchParams.get('code')!,
        redirect_uri: redirectUri,
        code_verifier: verifier,
        client_id: clientId,
        resource: FILES,
      },
    );
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);
    const claims = decodeJwt(tokens.body['access_token']!);
    expect(claims['sub']).toBe('bob');
    expect(claims['aud']).toBe(FILES);
  });

  it('shows a CIMD client by its client_id URL, and a server without a display name by its URL', {
    timeout: 60_000,
  }, async () => {
    const redirectUri = `${origin}/callback`;
    const clientId = `${host.base}/client.json`;
    host.documents.set('/client.json', {
      client_id: clientId,
      client_name: 'Metadata Client',
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'none',
    });
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(
      authorizationUrl(
        { url: serve.url },
        { clientId, redirectUri, challenge: pkce().challenge, resource: TOOLS, scope: 'mcp:tools' },
      ).href,
    );
    await expect.poll(() => page.title()).toBe('Sign in – Acme & Co MCP');
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('wonderland');
    await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);
    await expect.poll(() => page.title()).toBe('Authorize access');
    const consent = await page.locator('main').innerText();
    expect(consent).toContain('Authorize Metadata Client');
    expect(consent).toContain(`Client ID ${clientId}`);
    expect(await page.getByRole('heading', { level: 2, name: TOOLS }).count()).toBe(1);
    expect(consent).toContain('mcp:tools');
    await expectAccessible(page, 'consent (CIMD)');
    await page.screenshot({ path: join(ARTIFACTS, '3-consent-cimd.png'), fullPage: true });
    await context.close();
  });
});
