// `gatehouse serve --logo URL` (docs/authorization-server.md): the login, consent and device pages show the logo,
// and their Content-Security-Policy lets that logo load and no other image. In Chromium, through `gatehouse serve`.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.js';
import { authorizationUrl, pkce, register, type ServedAs, startServedAs, USER } from './helpers.js';

const SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40"><rect width="80" height="40" fill="#3050d0"/></svg>';
const DATA_LOGO = `data:image/svg+xml;base64,${Buffer.from(SVG).toString('base64')}`;

/** A loopback HTTP server with an SVG at `/logo.svg`; counts its requests per path. */
async function startImageHost(): Promise<{ origin: string; requests: string[]; server: Server }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '/');
    res.writeHead(200, { 'content-type': 'image/svg+xml' }).end(SVG);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
}

/** Console messages about CSP, collected from a page. */
function cspViolations(page: Page): string[] {
  const found: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) found.push(message.text());
  });
  return found;
}

/** Whether the page's logo (the `<img>` in the brand header) has loaded, with its natural width. */
async function logoWidth(page: Page): Promise<number> {
  const logo = page.locator('header.brand img');
  await expect.poll(() => logo.evaluate((img: HTMLImageElement) => img.complete)).toBe(true);
  return logo.evaluate((img: HTMLImageElement) => img.naturalWidth);
}

describe.each([
  ['a loopback http URL', 'http'],
  ['a data:image URL', 'data'],
] as const)('gatehouse serve --logo with %s', (_label, kind) => {
  let as: ServedAs;
  let browser: Browser;
  let images: Awaited<ReturnType<typeof startImageHost>>;
  let other: Awaited<ReturnType<typeof startImageHost>>;
  let logo: string;
  const redirectUri = 'http://127.0.0.1:4999/callback';

  beforeAll(async () => {
    images = await startImageHost();
    other = await startImageHost();
    logo = kind === 'http' ? `${images.origin}/logo.svg` : DATA_LOGO;
    as = await startServedAs({}, ['--name', 'Acme MCP', '--logo', logo]);
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    images?.server.close();
    other?.server.close();
    await as?.close();
  });

  it('shows the logo on the login and consent pages with no CSP violation', { timeout: 60_000 }, async () => {
    const reg = await register(as, { redirect_uris: [redirectUri], client_name: 'Logo Test Client' });
    expect(reg.status).toBe(201);
    const url = authorizationUrl(as, {
      clientId: String(reg.body['client_id']),
      redirectUri,
      challenge: pkce().challenge,
    });
    const context = await browser.newContext();
    const page = await context.newPage();
    const violations = cspViolations(page);

    const login = await page.goto(url.href);
    await expect.poll(() => page.title()).toBe('Sign in – Acme MCP');
    expect(await page.locator('header.brand img').getAttribute('src')).toBe(logo);
    expect(await logoWidth(page)).toBe(80);
    // Exactly what is needed: the logo's origin (or data:), no other image source.
    const policy = (await login!.allHeaders())['content-security-policy'] ?? '';
    expect(policy).toContain(`img-src ${kind === 'http' ? images.origin : 'data:'};`);
    expect(policy).toContain("default-src 'none'");

    await page.getByLabel('Username').fill(USER.username);
    await page.getByLabel('Password').fill(USER.password);
    await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);
    await expect.poll(() => page.title()).toContain('Authorize');
    expect(await logoWidth(page)).toBe(80);
    expect(violations).toEqual([]);
    if (kind === 'http') expect(images.requests.filter((path) => path === '/logo.svg').length).toBeGreaterThan(0);

    // Any other image is still refused by the policy.
    await page.evaluate((src) => {
      const img = document.createElement('img');
      img.src = src;
      document.body.append(img);
    }, `${other.origin}/elsewhere.svg`);
    await expect.poll(() => violations.length).toBeGreaterThan(0);
    expect(other.requests).toEqual([]);
    await context.close();
  });

  it('shows the logo on the device page with no CSP violation', { timeout: 60_000 }, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const violations = cspViolations(page);
    await page.goto(`${as.url}/device`);
    expect(await logoWidth(page)).toBe(80);
    expect(violations).toEqual([]);
    await context.close();
  });
});
