import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallbackTimeoutError, Client, headlessAuthorize, OAuth, TimeoutError } from '../../src/client/index.js';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

let stack: OAuthTestStack;
const locks = await temporaryDirectory('timeouts-locks');
beforeAll(async () => {
  stack = await startOAuthTestStack();
  // Warm up (module loading, the server's first JWKS fetch), so the timings below measure only what they name.
  const oauth = new OAuth({
    login: { username: 'demo', password: 'demo' },
    tokenStorage: new Map(),
    lockDirectory: locks.path,
  });
  await using client = new Client(stack.mcpUrl, { auth: oauth });
  await client.callTool('whoami');
});
afterAll(async () => {
  await stack.close();
  await locks.remove();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('timeouts that mean one thing each', () => {
  it('a login slower than the connect timeout succeeds: the handshake clock stops while the user logs in', async () => {
    let oauth: OAuth;
    oauth = new OAuth({
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      redirectHandler: async (url) => {
        await sleep(2_500); // the user takes three connect timeouts to log in
        const final = await headlessAuthorize(url, oauth.redirectUrl, { username: 'demo', password: 'demo' });
        await (await fetch(final)).text();
      },
    });
    await using client = new Client(stack.mcpUrl, { auth: oauth, connectTimeout: 1_000 });
    const started = Date.now();
    await client.connect();
    expect(Date.now() - started).toBeGreaterThan(2_500);
    expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe('demo');
  });

  it('a login that is never finished fails with its own CallbackTimeoutError, not the connect timeout', async () => {
    const oauth = new OAuth({
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      timeoutMs: 2_000,
      openBrowser: () => {},
    });
    const client = new Client(stack.mcpUrl, { auth: oauth, connectTimeout: 1_000 });
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackTimeoutError);
    expect((error as CallbackTimeoutError).code).toBe('ERR_CALLBACK_TIMEOUT');
    expect((error as CallbackTimeoutError).message).toMatch(/within 2 s/);
    expect((error as CallbackTimeoutError).hint).toMatch(/timeoutMs/);
    expect((error as CallbackTimeoutError).hint).not.toMatch(/starts/);
  });

  it('a server that never answers the handshake fails with the handshake timeout of connect({ timeout })', async () => {
    const hanging = createServer(() => {}); // accepts the initialize POST and never answers
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/mcp`;
    try {
      const client = new Client(url, { auth: new OAuth({ tokenStorage: new Map(), lockDirectory: locks.path }) });
      const started = Date.now();
      const error = await client.connect({ timeout: 400 }).catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(error).toBeInstanceOf(TimeoutError);
      expect((error as TimeoutError).timeoutMs).toBe(400);
      expect((error as TimeoutError).method).toBe('connect');
      expect((error as TimeoutError).hint).toMatch(/handshake/);
    } finally {
      hanging.closeAllConnections();
      await new Promise((resolve) => hanging.close(resolve));
    }
  });
});
