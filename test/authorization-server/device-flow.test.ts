import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuth } from '../../src/client/oauth.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { BIN, cli, tempStore } from '../cli/helpers.js';
import { axeViolations, blocking } from '../helpers/axe.js';
import { launchChromium } from '../helpers/chromium.js';
import { SERVE_USER, type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type Slot, startSlot } from '../helpers/serve-stack.js';
import { callTool, whoamiMcp } from '../server/helpers.js';

// The device authorization grant (RFC 8628) as users run it: `gatehouse serve` (device flow on by default), a
// protect()ed SDK server, `gatehouse login --device` as a process, and the user-code page driven in Chromium.

interface DevicePrompt {
  verification_uri: string;
  verification_uri_complete?: string;
  user_code: string;
  expires_in: number;
}

/** `gatehouse login --device URL --json` as a process: its first stdout line is the prompt. */
function deviceLogin(mcpUrl: string, store: string) {
  const env: Record<string, string> = { NO_COLOR: '1' };
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('GATEHOUSE_')) env[key] = value;
  }
  const child: ChildProcess = spawn(
    process.execPath,
    [BIN, 'login', '--device', mcpUrl, '--json', '--store', store, '--login-timeout', '90'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  const prompt = new Promise<DevicePrompt>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no device prompt:\n${stdout}\n${stderr}`)), 60_000);
    const look = () => {
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as DevicePrompt);
      }
    };
    child.stdout!.on('data', look);
    exited.then(() => reject(new Error(`gatehouse login exited before the prompt:\n${stdout}\n${stderr}`)));
  });
  return { prompt, exited, output: () => ({ stdout, stderr }), kill: () => child.kill('SIGTERM') };
}

/** Registers a public client allowed the device grant, as a CLI would (RFC 7591). */
async function registerDeviceClient(issuer: string): Promise<{ client_id: string }> {
  const response = await fetch(`${issuer}/reg`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'Raw device',
      redirect_uris: ['http://127.0.0.1:4711/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    }),
  });
  return (await response.json()) as { client_id: string };
}

async function postForm(url: string, body: Record<string, string>) {
  const response = await fetch(url, { method: 'POST', body: new URLSearchParams(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function expectAccessible(page: Page): Promise<void> {
  expect(blocking(await axeViolations(page))).toEqual([]);
}

/** Types the code on the verification page and continues to the confirmation page. */
async function enterCode(page: Page, verificationUri: string, code: string): Promise<void> {
  await page.goto(verificationUri);
  await page.getByLabel('Code').fill(code);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForLoadState();
}

/** From the confirmation page: continue, sign in as the superuser, and decide on the consent page. */
async function signInAndDecide(page: Page, decision: 'Approve' | 'Deny'): Promise<void> {
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByLabel('Username').fill(SERVE_USER.username);
  await page.getByLabel('Password').fill(SERVE_USER.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect.poll(() => page.title(), { timeout: 20_000 }).toBe('Authorize access');
  expect(await page.locator('main').innerText()).toContain('go back to your device');
  await page.getByRole('button', { name: decision }).click();
}

describe('device flow through gatehouse serve, the CLI and Chromium', () => {
  let as: ServeProcess;
  let mcp: Slot;
  let other: Slot;
  let browser: Browser;

  beforeAll(async () => {
    [mcp, other] = await Promise.all([startSlot(), startSlot()]);
    as = await startServeProcess(
      ['--resource', `${mcp.mcpUrl}=mcp:tools`, '--resource', `${other.mcpUrl}=mcp:tools`, '--name', 'Acme MCP'],
      { deviceFlow: { interval: 1 } },
    );
    const options = (resource: string) => ({
      resource,
      authorizationServers: [as.url],
      requiredScopes: ['mcp:tools'],
      verifier: jwtVerifier({ issuer: as.url }),
    });
    mcp.set(protect(whoamiMcp(), options(mcp.mcpUrl)));
    other.set(protect(whoamiMcp(), options(other.mcpUrl)));
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await as?.close();
    await Promise.all([mcp?.close(), other?.close()]);
  });

  it('advertises the device authorization endpoint and grant', async () => {
    const metadata = (await (await fetch(`${as.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    expect(metadata['device_authorization_endpoint']).toBe(`${as.url}/device/auth`);
    expect(metadata['grant_types_supported']).toContain('urn:ietf:params:oauth:grant-type:device_code');
  });

  it('approve: `gatehouse login --device` prints the code, the user enters it in the browser, the CLI stores an audience-bound token that calls the protect()ed server', {
    timeout: 120_000,
  }, async () => {
    const store = await tempStore();
    const login = deviceLogin(mcp.mcpUrl, store.dir);
    try {
      const prompt = await login.prompt;
      expect(prompt.verification_uri).toBe(`${as.url}/device`);
      expect(prompt.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
      await expect.poll(() => login.output().stderr).toContain(prompt.user_code);

      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(prompt.verification_uri);
      expect(await page.title()).toBe('Connect a device – Acme MCP');
      await expectAccessible(page);
      await page.getByLabel('Code').fill(prompt.user_code.toLowerCase().replace('-', ''));
      await page.getByRole('button', { name: 'Continue' }).click();
      await expect.poll(() => page.locator('main').innerText()).toContain(prompt.user_code);
      const confirm = await page.locator('main').innerText();
      expect(confirm).toContain('Connect Gatehouse CLI?');
      expect(confirm).toContain(mcp.mcpUrl);
      expect(confirm).toContain('mcp:tools');
      await expectAccessible(page);
      await signInAndDecide(page, 'Approve');
      await expect.poll(() => page.title(), { timeout: 20_000 }).toBe('Device connected');
      expect(await page.locator('main').innerText()).toContain('Gatehouse CLI is signed in');
      await expectAccessible(page);
      await context.close();

      expect(await login.exited).toBe(0);
      const result = JSON.parse(login.output().stdout.split('\n').slice(1).join('\n')) as Record<string, unknown>;
      expect(result).toMatchObject({ loggedIn: true, subject: SERVE_USER.username });

      const token = await cli(['token', mcp.mcpUrl, '--store', store.dir]);
      expect(token.status).toBe(0);
      const accessToken = token.stdout.trim();
      expect(decodeJwt(accessToken)['aud']).toBe(mcp.mcpUrl);
      const called = await callTool(mcp.mcpUrl, accessToken, 'whoami');
      expect(called.structuredContent).toMatchObject({ subject: SERVE_USER.username, scopes: ['mcp:tools'] });
      // Bound to its resource: the other MCP server of the same authorization server refuses it.
      const refused = await fetch(other.mcpUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${accessToken}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      expect(refused.status).toBe(401);
      const listed = await cli(['tools', mcp.mcpUrl, '--store', store.dir, '--json']);
      expect(listed.status).toBe(0);
      expect(listed.stdout).toContain('whoami');
    } finally {
      login.kill();
      await store.cleanup();
    }
  });

  it('deny: Cancel on the confirmation page ends the CLI with access_denied', { timeout: 120_000 }, async () => {
    const store = await tempStore();
    const login = deviceLogin(mcp.mcpUrl, store.dir);
    try {
      const prompt = await login.prompt;
      const context = await browser.newContext();
      const page = await context.newPage();
      // verification_uri_complete carries the code: straight to the confirmation page.
      await page.goto(prompt.verification_uri_complete!);
      await expect.poll(() => page.locator('main').innerText(), { timeout: 20_000 }).toContain(prompt.user_code);
      await page.getByRole('button', { name: 'Cancel' }).click();
      await expect.poll(() => page.title(), { timeout: 20_000 }).toBe('Access denied');
      await expectAccessible(page);
      await context.close();
      expect(await login.exited).toBe(1);
      expect(login.output().stderr).toMatch(/refused: access_denied/);
    } finally {
      login.kill();
      await store.cleanup();
    }
  });

  it("the device's link opens Gatehouse's page with the code filled in, submitting itself or, without scripts, on Continue", {
    timeout: 120_000,
  }, async () => {
    const reg = await registerDeviceClient(as.url);
    const started = await postForm(`${as.url}/device/auth`, { client_id: reg.client_id, resource: mcp.mcpUrl });
    const link = String(started.body['verification_uri_complete']);
    const userCode = String(started.body['user_code']);

    const raw = await fetch(link);
    const body = await raw.text();
    expect(raw.status).toBe(200);
    expect(body).not.toContain('Submitting Callback');
    expect(body).toContain('Connect a device to Acme MCP');
    expect(body).toContain(`value="${userCode}"`);
    const script = /<script>([^<]*)<\/script>/.exec(body)![1]!;
    const hash = createHash('sha256').update(script).digest('base64');
    const policy = raw.headers.get('content-security-policy')!;
    expect(policy).toContain(`script-src 'sha256-${hash}'`);
    expect(policy).toContain("default-src 'none'");

    const scriptless = await browser.newContext({ javaScriptEnabled: false });
    const page = await scriptless.newPage();
    await page.goto(link);
    expect(await page.title()).toBe('Connect a device – Acme MCP');
    expect(await page.getByLabel('Code').inputValue()).toBe(userCode);
    await page.getByRole('button', { name: 'Continue' }).click();
    await expect.poll(() => page.locator('main').innerText(), { timeout: 20_000 }).toContain(userCode);
    await expect(page.getByRole('button', { name: 'Cancel' }).count()).resolves.toBe(1);
    await scriptless.close();
  });

  it('deny on the consent page after signing in also ends in access_denied', { timeout: 120_000 }, async () => {
    const store = await tempStore();
    const login = deviceLogin(mcp.mcpUrl, store.dir);
    try {
      const prompt = await login.prompt;
      const context = await browser.newContext();
      const page = await context.newPage();
      await enterCode(page, prompt.verification_uri, prompt.user_code);
      await signInAndDecide(page, 'Deny');
      await expect.poll(() => page.title(), { timeout: 20_000 }).toBe('Access denied');
      await context.close();
      expect(await login.exited).toBe(1);
      expect(login.output().stderr).toMatch(/refused: access_denied/);
    } finally {
      login.kill();
      await store.cleanup();
    }
  });

  it('slow_down: the server answers a too-early poll with slow_down, and OAuth({ device: true }) then polls 5 s slower and still logs in', {
    timeout: 120_000,
  }, async () => {
    // The first poll is sent twice in a row; the client sees the answer to the second, early one.
    const polls: number[] = [];
    const answers: string[] = [];
    const doubling: typeof fetch = async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (!url.endsWith('/token')) return fetch(input, init);
      polls.push(Date.now());
      if (polls.length > 1) return fetch(input, init);
      await (await fetch(input, init)).text();
      const second = await fetch(input, init);
      const body = await second.text();
      answers.push((JSON.parse(body) as { error?: string }).error ?? 'tokens');
      return new Response(body, { status: second.status, headers: second.headers });
    };
    let shown: { verificationUri: string; userCode: string } | undefined;
    const oauth = new OAuth({
      mcpUrl: mcp.mcpUrl,
      device: true,
      tokenStorage: new Map(),
      fetch: doubling,
      onDeviceCode: (prompt) => {
        shown = prompt;
      },
    });
    const authorized = oauth.authorize();
    await expect.poll(() => shown, { timeout: 30_000 }).toBeDefined();
    await expect.poll(() => answers.length, { timeout: 30_000 }).toBeGreaterThan(0);
    expect(answers[0]).toBe('slow_down');
    const context = await browser.newContext();
    const page = await context.newPage();
    await enterCode(page, shown!.verificationUri, shown!.userCode);
    await signInAndDecide(page, 'Approve');
    await expect.poll(() => page.title(), { timeout: 20_000 }).toBe('Device connected');
    await context.close();
    await authorized;
    expect(decodeJwt((await oauth.tokens())!.access_token)['aud']).toBe(mcp.mcpUrl);
    // Interval 1 s, then 6 s after the first slow_down: the second poll came no sooner.
    expect(polls[1]! - polls[0]!).toBeGreaterThanOrEqual(5_500);
  });

  it('auto: a default OAuth whose browser opener fails to start switches to the device flow and logs in', {
    timeout: 120_000,
  }, async () => {
    const saved = { PATH: process.env['PATH'], DISPLAY: process.env['DISPLAY'] };
    // A desktop session (DISPLAY set) whose opener is missing: `xdg-open` cannot start.
    process.env['DISPLAY'] = ':0';
    process.env['PATH'] = '/nonexistent';
    try {
      let shown: { verificationUri: string; userCode: string } | undefined;
      const oauth = new OAuth({
        mcpUrl: mcp.mcpUrl,
        tokenStorage: new Map(),
        onDeviceCode: (prompt) => {
          shown = prompt;
        },
      });
      const authorized = oauth.authorize();
      await expect.poll(() => shown, { timeout: 30_000 }).toBeDefined();
      process.env['PATH'] = saved.PATH;
      const context = await browser.newContext();
      const page = await context.newPage();
      await enterCode(page, shown!.verificationUri, shown!.userCode);
      await signInAndDecide(page, 'Approve');
      await expect.poll(() => page.title(), { timeout: 20_000 }).toBe('Device connected');
      await context.close();
      await authorized;
      expect(decodeJwt((await oauth.tokens())!.access_token)['aud']).toBe(mcp.mcpUrl);
    } finally {
      process.env['PATH'] = saved.PATH;
      if (saved.DISPLAY === undefined) delete process.env['DISPLAY'];
      else process.env['DISPLAY'] = saved.DISPLAY;
    }
  });

  it('slow_down on the wire, interval in the response, resource required', async () => {
    const reg = await registerDeviceClient(as.url);
    const post = (path: string, body: Record<string, string>) => postForm(`${as.url}${path}`, body);
    const missing = await post('/device/auth', { client_id: reg.client_id });
    expect(missing.body['error']).toBe('invalid_target');
    const started = await post('/device/auth', { client_id: reg.client_id, resource: mcp.mcpUrl });
    expect(started.body).toMatchObject({ interval: 1, expires_in: 600 });
    const poll = () =>
      post('/token', {
        client_id: reg.client_id,
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: String(started.body['device_code']),
      });
    expect((await poll()).body['error']).toBe('authorization_pending');
    expect((await poll()).body['error']).toBe('slow_down');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    // The interval is now 6 s: 1.5 s later is still too early.
    expect((await poll()).body['error']).toBe('slow_down');
  });
});

describe('device flow limits (gatehouse serve with a short code lifetime and a wrong-code limit)', () => {
  let as: ServeProcess;
  let mcp: Slot;
  let browser: Browser;

  beforeAll(async () => {
    mcp = await startSlot();
    as = await startServeProcess(['--resource', `${mcp.mcpUrl}=mcp:tools`], {
      deviceFlow: { interval: 1, expiresIn: 10, userCodeAttempts: 3 },
    });
    mcp.set(
      protect(whoamiMcp(), {
        resource: mcp.mcpUrl,
        authorizationServers: [as.url],
        verifier: jwtVerifier({ issuer: as.url }),
      }),
    );
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await as?.close();
    await mcp?.close();
  });

  it('wrong codes are refused, and after 3 the address gets 429 even with a right code', {
    timeout: 120_000,
  }, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    for (let i = 0; i < 3; i++) {
      await enterCode(page, `${as.url}/device`, 'BCDF-GHJK');
      expect(await page.locator('[role=alert]').innerText()).toContain('That code is not valid');
      await expectAccessible(page);
    }
    const reg = await registerDeviceClient(as.url);
    const started = await postForm(`${as.url}/device/auth`, { client_id: reg.client_id, resource: mcp.mcpUrl });
    const response = await fetch(`${as.url}/device`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ user_code: String(started.body['user_code']) }),
    });
    expect(response.status).toBe(429);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await response.text()).toContain('Too many wrong codes');
    await context.close();
  });
  it('expired: the CLI gives up with the expired-code error when nobody enters the code in time', {
    timeout: 120_000,
  }, async () => {
    const store = await tempStore();
    const login = deviceLogin(mcp.mcpUrl, store.dir);
    try {
      const prompt = await login.prompt;
      expect(prompt.expires_in).toBe(10);
      expect(await login.exited).toBe(1);
      expect(login.output().stderr).toMatch(/device code expired/i);
      expect(login.output().stderr).toMatch(/fix: .*enter the new code/i);
    } finally {
      login.kill();
      await store.cleanup();
    }
  });
});
