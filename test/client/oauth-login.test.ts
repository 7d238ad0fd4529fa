import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  AuthorizationDeniedError,
  CallbackTimeoutError,
  headlessAuthorize,
  OAuth,
} from '../../src/client/index.js';
import { memoryStore, TokenStorage } from '../../src/storage/index.js';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

let stack: OAuthTestStack;
const locks = await temporaryDirectory('oauth-login-locks');
beforeAll(async () => {
  stack = await startOAuthTestStack();
});
afterAll(async () => {
  await stack.close();
  await locks.remove();
});

const credentials = () => ({ username: stack.username, password: stack.password });

/** A "browser": logs in by posting the forms, then follows the final redirect to the callback server. */
function browser(redirectUri: () => string) {
  const opened: string[] = [];
  const open = async (url: URL) => {
    opened.push(url.href);
    const final = await headlessAuthorize(url, redirectUri(), credentials());
    const page = await fetch(final);
    await page.text();
  };
  return { opened, open };
}

async function whoami(oauth: OAuth): Promise<string | null> {
  const client = new Client({ name: 'oauth-login-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { fetch: oauth.wrapFetch() }));
  try {
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    return (result.structuredContent as { subject: string | null }).subject;
  } finally {
    await client.close();
  }
}

const registrations = () => stack.asRequests.filter((r) => r.startsWith('POST /reg')).length;

describe('OAuth browser login through the loopback callback server', () => {
  it('logs in with openBrowser, registers a native client with a localhost redirect, and calls the tool', async () => {
    const storage = new TokenStorage(memoryStore());
    let oauth: OAuth;
    const b = browser(() => oauth.redirectUrl);
    oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, openBrowser: b.open, lockDirectory: locks.path });
    expect(await whoami(oauth)).toBe('demo');
    expect(b.opened).toHaveLength(1);
    const url = new URL(b.opened[0]!);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('resource')).toBe(stack.mcpUrl);
    expect(url.searchParams.get('redirect_uri')).toMatch(/^http:\/\/localhost:\d+\/callback$/);
    const client = await storage.getClient(stack.mcpUrl);
    expect(client?.['application_type']).toBe('native');
    expect(client?.['issuer']).toBe(stack.issuer);
  });

  it('keeps the registered redirect port on the next login, so the cached registration still matches', async () => {
    const storage = new TokenStorage(memoryStore());
    let first: OAuth;
    const b1 = browser(() => first.redirectUrl);
    first = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, openBrowser: b1.open, lockDirectory: locks.path });
    await first.authorize();
    const registered = new URL(((await storage.getClient(stack.mcpUrl))!['redirect_uris'] as string[])[0]!);
    await storage.deleteTokens(stack.mcpUrl);
    const before = registrations();

    let second: OAuth;
    const b2 = browser(() => second.redirectUrl);
    second = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      openBrowser: b2.open,
      lockDirectory: locks.path,
    });
    await second.authorize();
    expect(new URL(new URL(b2.opened[0]!).searchParams.get('redirect_uri')!).port).toBe(registered.port);
    expect(registrations()).toBe(before);
    expect(await whoami(second)).toBe('demo');
  });

  it('uses redirectHandler instead of a browser', async () => {
    let oauth: OAuth;
    const b = browser(() => oauth.redirectUrl);
    oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: new Map(),
      redirectHandler: b.open,
      lockDirectory: locks.path,
    });
    expect(await whoami(oauth)).toBe('demo');
    expect(b.opened).toHaveLength(1);
  });

  it('answers a stray callback with the wrong state 400 and completes the login with the right one', async () => {
    let oauth: OAuth;
    const strays: number[] = [];
    oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      openBrowser: async (url) => {
        const final = await headlessAuthorize(url, oauth.redirectUrl, credentials());
        const stray = new URL(final);
        stray.searchParams.set('state', 'not-the-state-of-this-login');
        strays.push((await fetch(stray)).status);
        strays.push((await fetch(`${oauth.redirectUrl}?error=access_denied&state=forged`)).status);
        await (await fetch(final)).text();
      },
    });
    expect(await whoami(oauth)).toBe('demo');
    expect(strays).toEqual([400, 400]);
  });

  it('raises AuthorizationDeniedError when the user refuses', async () => {
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      openBrowser: async (url) => {
        const state = url.searchParams.get('state')!;
        await (await fetch(`${oauth.redirectUrl}?error=access_denied&state=${state}`)).text();
      },
    });
    const error = await oauth.authorize().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthorizationDeniedError);
    expect((error as AuthorizationDeniedError).hint).toBeTruthy();
  });

  it('raises CallbackTimeoutError when the login is not finished in time', async () => {
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      timeoutMs: 300,
      openBrowser: () => {},
    });
    const error = await oauth.authorize().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackTimeoutError);
  });

  it('never opens an unsafe authorization URL', async () => {
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: new Map(), lockDirectory: locks.path });
    // Driving redirectToAuthorization directly: the default opener must refuse before spawning anything.
    const error = await oauth.redirectToAuthorization(new URL('file:///etc/passwd')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).code).toBe('ERR_UNSAFE_URL');
  });
});

describe('OAuth recovery', () => {
  it('falls back to a fresh login when the refresh token is refused, without looping', async () => {
    const storage = new TokenStorage(memoryStore());
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      login: credentials(),
      lockDirectory: locks.path,
    });
    expect(await whoami(oauth)).toBe('demo');
    await storage.update(stack.mcpUrl, (record) => ({
      ...record!,
      tokens: { ...record!.tokens!, access_token: 'revoked', refresh_token: 'revoked', expires_at: 0 },
    }));
    const fresh = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      login: credentials(),
      lockDirectory: locks.path,
    });
    const logins = stack.grants['authorization_code'] ?? 0;
    expect(await whoami(fresh)).toBe('demo');
    expect(stack.grants['authorization_code']).toBe(logins + 1);
    expect((await storage.getTokens(stack.mcpUrl))?.refresh_token).not.toBe('revoked');
  });

  it('on invalid_client forgets the registration and registers again once', async () => {
    const storage = new TokenStorage(memoryStore());
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      login: credentials(),
      lockDirectory: locks.path,
    });
    expect(await whoami(oauth)).toBe('demo');
    // The authorization server no longer knows this client (deleted, or its database reset).
    await storage.update(stack.mcpUrl, (record) => ({
      ...record!,
      client: { ...record!.client!, client_id: 'deleted-client' },
      tokens: { ...record!.tokens!, access_token: 'stale', expires_at: 0 },
    }));
    const fresh = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      login: credentials(),
      lockDirectory: locks.path,
    });
    const before = registrations();
    expect(await whoami(fresh)).toBe('demo');
    expect(registrations()).toBe(before + 1);
    expect((await storage.getClient(stack.mcpUrl))?.client_id).not.toBe('deleted-client');
  });

  it('clearCredentials() forgets one server, or everything', async () => {
    const storage = new TokenStorage(memoryStore());
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      login: credentials(),
      lockDirectory: locks.path,
    });
    await oauth.authorize();
    await storage.saveTokens('https://other.example/mcp', { access_token: 'x', token_type: 'Bearer' });
    await oauth.clearCredentials();
    expect(await storage.read(stack.mcpUrl)).toBeUndefined();
    expect(await storage.getTokens('https://other.example/mcp')).toBeDefined();
    await oauth.clearCredentials('all');
    expect(await storage.getTokens('https://other.example/mcp')).toBeUndefined();
  });
});
