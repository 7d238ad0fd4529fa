// docs/login.md, "the device flow": an authorization server without `device_authorization_endpoint` raises
// DeviceFlowUnsupportedError, and a code not approved within `timeoutMs` raises DeviceCodeExpiredError and stops
// polling. Both through `OAuth({ device: true })` against a real authorization server and protected MCP server.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canOpenBrowser, DeviceCodeExpiredError, DeviceFlowUnsupportedError, OAuth } from '../../src/client/index.js';
import { type FrontHandler, type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

let stack: OAuthTestStack;
let frontAs: FrontHandler | undefined;
beforeAll(async () => {
  stack = await startOAuthTestStack({ front: { as: (req, res) => frontAs?.(req, res) ?? false } });
});
afterAll(async () => {
  await stack?.close();
});

const posts = (path: string) => stack.asRequests.filter((r) => r.startsWith(`POST ${path}`)).length;

describe('device flow errors', () => {
  it('an authorization server without device_authorization_endpoint: DeviceFlowUnsupportedError', async () => {
    const metadata = await (await fetch(`${stack.issuer}/.well-known/oauth-authorization-server`)).json();
    expect(metadata.device_authorization_endpoint).toBeTruthy(); // the real server offers it...
    const { device_authorization_endpoint: _, ...withoutDevice } = metadata;
    frontAs = (req, res) => {
      if (!req.url?.startsWith('/.well-known/')) return false;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(withoutDevice));
      return true;
    };
    const shown: unknown[] = [];
    try {
      const oauth = new OAuth({
        mcpUrl: stack.mcpUrl,
        device: true,
        tokenStorage: new Map(),
        onDeviceCode: (p) => void shown.push(p),
      });
      await expect(oauth.authorize()).rejects.toBeInstanceOf(DeviceFlowUnsupportedError); // ...this one does not
    } finally {
      frontAs = undefined;
    }
    expect(shown).toEqual([]);
  });

  it('a code not approved within timeoutMs: DeviceCodeExpiredError, no tokens, and polling stops', async () => {
    const shown: { userCode: string }[] = [];
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      device: true,
      tokenStorage: new Map(),
      timeoutMs: 1_000,
      onDeviceCode: (p) => void shown.push(p),
    });
    const deviceEndpoint = new URL(
      (await (await fetch(`${stack.issuer}/.well-known/oauth-authorization-server`)).json())
        .device_authorization_endpoint,
    ).pathname;
    const started = Date.now();
    await expect(oauth.authorize()).rejects.toBeInstanceOf(DeviceCodeExpiredError);
    // The server's interval (5 s) is the first chance to notice; the real code lives 600 s.
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(shown).toHaveLength(1);
    expect(posts(deviceEndpoint)).toBe(1);
    expect(await oauth.tokens()).toBeUndefined();
    const polls = posts('/token');
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    expect(posts('/token')).toBe(polls);
  }, 30_000);

  it('auto: over SSH a default OAuth uses the device flow by itself (canOpenBrowser() says why)', async () => {
    expect(canOpenBrowser({ SSH_CONNECTION: '10.0.0.1 50000 10.0.0.2 22', DISPLAY: ':0' }, 'linux')).toBe(false);
    expect(canOpenBrowser({}, 'linux')).toBe(false);
    expect(canOpenBrowser({ WAYLAND_DISPLAY: 'wayland-0' }, 'linux')).toBe(true);
    // A desktop (DISPLAY set) whose xdg-open only notes that it was called: the SSH session alone decides.
    const bin = await temporaryDirectory('fake-opener');
    const opened = join(bin.path, 'opened');
    await writeFile(join(bin.path, 'xdg-open'), `#!/bin/sh\necho "$1" >> '${opened}'\n`, { mode: 0o755 });
    const saved = {
      SSH_CONNECTION: process.env['SSH_CONNECTION'],
      DISPLAY: process.env['DISPLAY'],
      PATH: process.env['PATH'],
    };
    Object.assign(process.env, {
      SSH_CONNECTION: '10.0.0.1 50000 10.0.0.2 22',
      DISPLAY: ':0',
      PATH: `${bin.path}:${saved.PATH}`,
    });
    const shown: unknown[] = [];
    try {
      // No `device` option: 'auto', which sees the SSH session and asks for a device code instead of a browser.
      const oauth = new OAuth({
        mcpUrl: stack.mcpUrl,
        tokenStorage: new Map(),
        timeoutMs: 1_000,
        onDeviceCode: (p) => void shown.push(p),
      });
      await expect(oauth.authorize()).rejects.toBeInstanceOf(DeviceCodeExpiredError);
      expect(existsSync(opened)).toBe(false);
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
      await bin.remove();
    }
    expect(shown).toHaveLength(1);
  }, 30_000);
});
