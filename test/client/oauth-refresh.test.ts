import { spawn } from 'node:child_process';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuth, type OAuthEvent } from '../../src/client/index.js';
import { fileStore, memoryStore, TokenStorage } from '../../src/storage/index.js';
import {
  buildClientForChildren,
  type OAuthTestStack,
  startOAuthTestStack,
  temporaryDirectory,
} from './oauth-helpers.js';

let stack: OAuthTestStack;
let src: string;
const locks = await temporaryDirectory('oauth-locks');
beforeAll(async () => {
  stack = await startOAuthTestStack({ accessTokenTtl: 3600 });
  src = await buildClientForChildren(); // transpiles src/ for the child processes (a few seconds, then cached)
}, 180_000);
afterAll(async () => {
  await stack.close();
  await locks.remove();
});

function connect(oauth: OAuth): Promise<Client> {
  const client = new Client({ name: 'oauth-test', version: '1.0.0' });
  return client
    .connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { fetch: oauth.wrapFetch() }))
    .then(() => client);
}

async function whoami(client: Client): Promise<string | null> {
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  return (result.structuredContent as { subject: string | null }).subject;
}

/** A clock that can jump forward, shared by the OAuth and its TokenStorage. */
function clock() {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (ms: number) => (offset += ms) };
}

/** Moves the stored access token's expiry to `seconds` from now (the token itself stays valid at the server). */
async function expireIn(storage: TokenStorage, seconds: number): Promise<void> {
  await storage.update(stack.mcpUrl, (record) => ({
    ...record!,
    tokens: { ...record!.tokens!, expires_at: Math.floor(Date.now() / 1000) + seconds },
  }));
}

const refreshes = () => stack.grants['refresh_token'] ?? 0;

describe('OAuth with token storage', () => {
  it('stores tokens with an absolute expires_at and reuses them on reconnect without asking the authorization server', async () => {
    const storage = new TokenStorage(memoryStore());
    const first = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, login: stack, lockDirectory: locks.path });
    const client = await connect(first);
    expect(await whoami(client)).toBe('demo');
    await client.close();
    const stored = await storage.getTokens(stack.mcpUrl);
    expect(stored?.expires_at).toBeGreaterThan(Date.now() / 1000 + 3000);
    expect(stored?.refresh_token).toBeTruthy();

    const events: OAuthEvent[] = [];
    const asBefore = stack.asRequests.length;
    const second = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      lockDirectory: locks.path,
      onEvent: (e) => events.push(e),
      openBrowser: () => {
        throw new Error('must not log in again');
      },
    });
    const again = await connect(second);
    expect(await whoami(again)).toBe('demo');
    await again.close();
    expect(stack.asRequests.length).toBe(asBefore);
    expect(events.filter((e) => e.type === 'http')).toEqual([]);
  });

  it('accepts a plain Map and a Keyv-style adapter as tokenStorage', async () => {
    const map = new Map();
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: map, login: stack, lockDirectory: locks.path });
    const client = await connect(oauth);
    expect(await whoami(client)).toBe('demo');
    await client.close();
    expect(map.size).toBe(1);
  });

  it('refreshes a token near expiry before using it', async () => {
    const time = clock();
    const storage = new TokenStorage(memoryStore(), { now: time.now });
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      login: stack,
      lockDirectory: locks.path,
      now: time.now,
    });
    const client = await connect(oauth);
    expect(await whoami(client)).toBe('demo');
    const old = (await storage.getTokens(stack.mcpUrl))!;
    time.advance((3600 - 20) * 1000); // 20 s before expiry: inside the 60 s refresh skew, still valid at the server
    const before = refreshes();
    const mcpBefore = stack.asRequests.length;
    expect(await whoami(client)).toBe('demo');
    expect(refreshes()).toBe(before + 1);
    const fresh = (await storage.getTokens(stack.mcpUrl))!;
    expect(fresh.access_token).not.toBe(old.access_token);
    expect(fresh.refresh_token).not.toBe(old.refresh_token); // rotated
    expect(fresh.expires_at).toBeGreaterThan(time.now() / 1000 + 3000);
    expect(stack.asRequests.slice(mcpBefore).some((r) => r.startsWith('POST /token'))).toBe(true);
    await client.close();
  });

  it('100 concurrent tool calls across an expiry: exactly one refresh, no failed call', async () => {
    const time = clock();
    const storage = new TokenStorage(memoryStore(), { now: time.now });
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      login: stack,
      lockDirectory: locks.path,
      now: time.now,
    });
    const client = await connect(oauth);
    expect(await whoami(client)).toBe('demo');
    time.advance((3600 - 30) * 1000);
    const before = refreshes();
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => whoami(client)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(results.every((r) => r.status === 'fulfilled' && r.value === 'demo')).toBe(true);
    expect(refreshes()).toBe(before + 1);
    await client.close();
  }, 120_000); // generous: the conformance suite may be loading the machine at the same time

  it('two processes sharing a file store across an expiry: one refresh, both keep working', async () => {
    const dir = await temporaryDirectory('oauth-two-processes');
    try {
      const storage = new TokenStorage(fileStore({ directory: dir.path }));
      const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, login: stack, lockDirectory: locks.path });
      await oauth.authorize();
      await expireIn(storage, 30);
      const before = refreshes();
      const logins = stack.grants['authorization_code'] ?? 0;
      const child = () =>
        new Promise<{ ok: number }>((resolve, reject) => {
          const proc = spawn(
            process.execPath,
            [
              new URL('./fixtures/oauth-refresh-child.mjs', import.meta.url).pathname,
              src,
              dir.path,
              stack.mcpUrl,
              '5',
              locks.path,
            ],
            { stdio: ['ignore', 'pipe', 'pipe'] },
          );
          let out = '';
          let err = '';
          proc.stdout.on('data', (c) => (out += c));
          proc.stderr.on('data', (c) => (err += c));
          proc.on('exit', (code) =>
            code === 0 ? resolve(JSON.parse(out.trim())) : reject(new Error(`exit ${code}: ${err}`)),
          );
        });
      const [a, b] = await Promise.all([child(), child()]);
      expect(a.ok).toBe(5);
      expect(b.ok).toBe(5);
      expect(refreshes()).toBe(before + 1);
      expect(stack.grants['authorization_code'] ?? 0).toBe(logins);
    } finally {
      await dir.remove();
    }
  }, 120_000); // generous: the conformance suite may be loading the machine at the same time
});

describe('authorize() says what it did (docs/login.md, "Tokens and refresh")', () => {
  it("'logged-in', then 'stored' with no request to the authorization server, then 'refreshed' near expiry", async () => {
    const tokenStorage = new Map();
    const login = { username: stack.username, password: stack.password };
    const options = { mcpUrl: stack.mcpUrl, login, tokenStorage, lockDirectory: locks.path };
    expect(await new OAuth(options).authorize()).toBe('logged-in');
    const requests = stack.asRequests.length;
    expect(await new OAuth(options).authorize()).toBe('stored');
    expect(stack.asRequests.length).toBe(requests);
    // A token living 3600 s is "about to expire" for a client refreshing 7200 s ahead.
    const refreshes = stack.grants['refresh_token'] ?? 0;
    const codes = stack.grants['authorization_code'] ?? 0;
    expect(await new OAuth({ ...options, refreshSkewSeconds: 7200 }).authorize()).toBe('refreshed');
    expect(stack.grants['refresh_token']).toBe(refreshes + 1);
    expect(stack.grants['authorization_code'] ?? 0).toBe(codes);
  });
});
