import { readdir, readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, connect as netConnect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { PassThrough } from 'node:stream';
import { refreshAuthorization } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertOpenableUrl } from '../../src/client/browser.js';
import { AuthenticationError, headlessAuthorize, OAuth, startCallbackServer } from '../../src/client/index.js';
import { fileStore, memoryStore, TOKEN_RECORD_VERSION, TokenStorage } from '../../src/storage/index.js';
import { startQuirkyPeer } from './doubles.js';
import { type InteropStack, startInteropStack, temporaryDirectory } from './helpers.js';

let stack: InteropStack;
const locks = await temporaryDirectory('interop-client-locks');
beforeAll(async () => {
  stack = await startInteropStack({ accessTokenTtl: 3600 });
});
afterAll(async () => {
  await stack.close();
  await locks.remove();
});

const login = { username: 'demo', password: 'demo' };
const registrations = () => stack.asRequests.filter((r) => r.startsWith('POST /reg')).length;
const logins = () => stack.grants['authorization_code'] ?? 0;

/** A "browser" that logs in by posting the forms and then follows the redirect to the callback server. */
const browserFor = (oauth: () => OAuth) => async (url: URL) => {
  const final = await headlessAuthorize(url, oauth().redirectUrl, login);
  await (await fetch(final)).text();
};

async function callMcp(oauth: OAuth, url = stack.mcpUrl): Promise<Response> {
  return oauth.wrapFetch()(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'interop', version: '1' } },
    }),
  });
}

/** Holds a loopback port the way another program would. */
async function occupy(port = 0): Promise<{ port: number; close(): Promise<void> }> {
  const server: NetServer = createNetServer();
  await new Promise<void>((resolve) => server.listen({ port, host: '127.0.0.1', exclusive: true }, resolve));
  const taken = (server.address() as { port: number }).port;
  return { port: taken, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('note 02: tokens lost on restart or upgrade', () => {
  it('note 02: provoked — a store whose path carries the version finds nothing after an upgrade', async () => {
    const dir = await temporaryDirectory('interop-versioned-path');
    try {
      // mcp-remote keeps ~/.mcp-auth/mcp-remote-<version>/: the next version looks in another directory.
      const old = new TokenStorage(fileStore({ directory: `${dir.path}/mcp-remote-0.1.37` }));
      await old.saveTokens(stack.mcpUrl, { access_token: 'a', token_type: 'Bearer', refresh_token: 'r' });
      const upgraded = new TokenStorage(fileStore({ directory: `${dir.path}/mcp-remote-0.1.38` }));
      expect(await upgraded.getTokens(stack.mcpUrl)).toBeUndefined();
    } finally {
      await dir.remove();
    }
  });

  it('note 02: the record carries its own format version (never the path), and old records migrate and stay usable', async () => {
    const dir = await temporaryDirectory('interop-record-version');
    try {
      // A version-1 record (relative expires_in + savedAt, as the SDK examples persist) from a real login.
      const first = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: new Map(), login, lockDirectory: locks.path });
      await first.authorize();
      const real = (await first.tokens())!;
      const client = (await first.clientInformation())!;
      const store = fileStore({ directory: dir.path });
      const storage = new TokenStorage(store);
      await store.set(storage.keyFor(stack.mcpUrl), {
        tokens: { ...real, expires_in: 3600 },
        clientInformation: client,
        savedAt: Date.now() - 3_570_000, // issued 59.5 minutes ago: inside the 60 s refresh skew
      });
      const loginsBefore = logins();
      const oauth = new OAuth({
        mcpUrl: stack.mcpUrl,
        tokenStorage: fileStore({ directory: dir.path }),
        lockDirectory: locks.path,
        openBrowser: () => {
          throw new Error('must not log in again');
        },
      });
      expect((await callMcp(oauth)).status).toBe(200);
      expect(logins()).toBe(loginsBefore); // the migrated refresh token was used, not a new login
      const files = await readdir(dir.path);
      expect(files.join(' ')).not.toMatch(/\d+\.\d+\.\d+/); // no version in any path
      const raw = await store.get(storage.keyFor(stack.mcpUrl));
      expect(raw).toMatchObject({ version: TOKEN_RECORD_VERSION });
    } finally {
      await dir.remove();
    }
  });
});

describe('note 03: a registration deleted on the server heals', () => {
  async function loggedIn(storage: TokenStorage) {
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, login, lockDirectory: locks.path });
    await oauth.authorize();
    const clientId = (await storage.getClient(stack.mcpUrl))!.client_id;
    await stack.as.adapter('Client').destroy(clientId); // what an operator's cleanup or a DB reset does
    return clientId;
  }

  it('note 03: provoked — the deleted client gets 401 invalid_client at the token endpoint', async () => {
    const storage = new TokenStorage(memoryStore());
    const clientId = await loggedIn(storage);
    const tokens = (await storage.getTokens(stack.mcpUrl))!;
    const response = await fetch(`${stack.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: tokens.refresh_token!,
        client_id: clientId,
      }),
    });
    expect(response.status).toBe(401);
    expect((await response.json())['error']).toBe('invalid_client');
  });

  it('note 03: invalid_client at the refresh step → forget the registration, register again once, continue', async () => {
    const storage = new TokenStorage(memoryStore());
    const old = await loggedIn(storage);
    await storage.update(stack.mcpUrl, (r) => ({ ...r!, tokens: { ...r!.tokens!, expires_at: 1 } }));
    const before = registrations();
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, login, lockDirectory: locks.path });
    expect((await callMcp(oauth)).status).toBe(200);
    expect(registrations()).toBe(before + 1);
    expect((await storage.getClient(stack.mcpUrl))!.client_id).not.toBe(old);
  });

  it('note 03: an unknown client at /authorize (no tokens left) → register again once, continue', async () => {
    const storage = new TokenStorage(memoryStore());
    const old = await loggedIn(storage);
    await storage.deleteTokens(stack.mcpUrl);
    const before = registrations();
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, login, lockDirectory: locks.path });
    expect((await callMcp(oauth)).status).toBe(200);
    expect(registrations()).toBe(before + 1);
    expect((await storage.getClient(stack.mcpUrl))!.client_id).not.toBe(old);
  });

  it('note 03: invalid_client at the code exchange → register again once, continue', async () => {
    const storage = new TokenStorage(memoryStore());
    let deleted = false;
    let oauth: OAuth;
    const before = registrations();
    oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      lockDirectory: locks.path,
      openBrowser: async (url) => {
        const final = await headlessAuthorize(url, oauth.redirectUrl, login);
        if (!deleted) {
          deleted = true; // the client is deleted between /authorize and the token request
          await stack.as.adapter('Client').destroy(url.searchParams.get('client_id')!);
        }
        await (await fetch(final)).text();
      },
    });
    expect((await callMcp(oauth)).status).toBe(200);
    expect(registrations()).toBe(before + 2);
  });
});

describe('note 04: callback port already in use', () => {
  it('note 04: a taken fixed port → a typed error naming the port and the fix', async () => {
    const busy = await occupy();
    try {
      const oauth = new OAuth({
        mcpUrl: stack.mcpUrl,
        tokenStorage: new Map(),
        callbackPort: busy.port,
        lockDirectory: locks.path,
        openBrowser: () => {
          throw new Error('must not get this far');
        },
      });
      const error = (await oauth.authorize().catch((e: unknown) => e)) as AuthenticationError;
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe('ERR_CALLBACK_PORT');
      expect(error.message).toContain(String(busy.port));
      expect(error.hint).toMatch(/callbackPort/);
    } finally {
      await busy.close();
    }
  });

  it('note 04: a taken registered (not fixed) port → another port, and a new registration for the new redirect URI', async () => {
    const storage = new TokenStorage(memoryStore());
    let oauth: OAuth;
    oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      openBrowser: browserFor(() => oauth),
      lockDirectory: locks.path,
    });
    await oauth.authorize();
    const registered = new URL(((await storage.getClient(stack.mcpUrl))!['redirect_uris'] as string[])[0]!);
    await storage.deleteTokens(stack.mcpUrl);
    const busy = await occupy(Number(registered.port));
    try {
      const before = registrations();
      let next: OAuth;
      const opened: string[] = [];
      next = new OAuth({
        mcpUrl: stack.mcpUrl,
        tokenStorage: storage,
        lockDirectory: locks.path,
        openBrowser: async (url) => {
          opened.push(url.searchParams.get('redirect_uri')!);
          await browserFor(() => next)(url);
        },
      });
      expect((await callMcp(next)).status).toBe(200);
      expect(new URL(opened[0]!).port).not.toBe(registered.port);
      expect(registrations()).toBe(before + 1);
    } finally {
      await busy.close();
    }
  });
});

describe('note 05: redirect-port drift', () => {
  it('note 05: provoked — an exact-match AS refuses the cached registration with a new port', async () => {
    const reg = await fetch(`${stack.issuer}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ application_type: 'web', redirect_uris: ['http://localhost:3000/callback'] }),
    });
    const client = (await reg.json()) as { client_id: string };
    const url = new URL(`${stack.issuer}/auth`);
    for (const [k, v] of Object.entries({
      client_id: client.client_id,
      response_type: 'code',
      redirect_uri: 'http://localhost:3001/callback', // the port the new flow happens to listen on
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
      scope: 'mcp:tools',
      resource: stack.mcpUrl,
    }))
      url.searchParams.set(k, v);
    const response = await fetch(url, { redirect: 'manual' });
    expect(response.status).toBe(400);
    await response.text();
  });

  it('note 05: the cached registration’s redirect port is reused, without registering again', async () => {
    const storage = new TokenStorage(memoryStore());
    let first: OAuth;
    first = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      openBrowser: browserFor(() => first),
      lockDirectory: locks.path,
    });
    await first.authorize();
    const registered = new URL(((await storage.getClient(stack.mcpUrl))!['redirect_uris'] as string[])[0]!);
    await storage.deleteTokens(stack.mcpUrl);
    const before = registrations();
    let second: OAuth;
    const opened: string[] = [];
    second = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: storage,
      lockDirectory: locks.path,
      openBrowser: async (url) => {
        opened.push(url.searchParams.get('redirect_uri')!);
        await browserFor(() => second)(url);
      },
    });
    await second.authorize();
    expect(new URL(opened[0]!).port).toBe(registered.port);
    expect(registrations()).toBe(before);
  });
});

describe('note 07: headless and SSH machines', () => {
  it('note 07: provoked — no browser and an unreachable loopback: the callback never arrives', async () => {
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      timeoutMs: 1500,
      openBrowser: () => {
        throw new Error('no browser on this machine');
      },
    });
    const stderr = process.stderr.write;
    process.stderr.write = () => true;
    try {
      const error = await oauth.authorize().catch((e: unknown) => e);
      expect((error as AuthenticationError).code).toBe('ERR_CALLBACK_TIMEOUT');
    } finally {
      process.stderr.write = stderr;
    }
  });

  it('note 07: paste-back — prints the URL, reads the final redirect URL from stdin, no callback server', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    let printed = '';
    output.on('data', (c) => (printed += c));
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      pasteBack: { input, output },
    });
    const done = oauth.authorize();
    // The user opens the printed URL on another machine; the final redirect to localhost fails to load there.
    while (!/https?:\/\/\S+\/auth\?\S+/.test(printed)) await new Promise((r) => setTimeout(r, 20));
    const url = new URL(/(https?:\/\/\S+\/auth\?\S+)/.exec(printed)![1]!);
    const final = await headlessAuthorize(url, oauth.redirectUrl, login);
    const refused = await fetch(final).then(
      () => false,
      () => true,
    );
    expect(refused).toBe(true); // nothing listens on the redirect port
    input.write('not a url\n');
    input.write(`${final.href}\n`);
    await done;
    expect((await callMcp(oauth)).status).toBe(200);
  });

  it('note 07: the auto-login POST for automation (login: { username, password })', async () => {
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: new Map(), login, lockDirectory: locks.path });
    expect((await callMcp(oauth)).status).toBe(200);
  });
});

describe('note 08: quirky token endpoints', () => {
  it('note 08: provoked — a form-encoded token response breaks the plain SDK refresh', async () => {
    const peer = await startQuirkyPeer({ tokenFormat: 'always' });
    try {
      const error = await refreshAuthorization(peer.url, {
        clientInformation: { client_id: 'c' },
        refreshToken: 'r|read',
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
    } finally {
      await peer.close();
    }
  });

  it('note 08: sends Accept: application/json (GitHub) and understands form-encoded answers', async () => {
    for (const tokenFormat of ['unless-json', 'always'] as const) {
      const peer = await startQuirkyPeer({ tokenFormat });
      try {
        const storage = new TokenStorage(memoryStore());
        const oauth = new OAuth({
          mcpUrl: peer.mcpUrl,
          clientId: 'gh',
          tokenStorage: storage,
          login,
          lockDirectory: locks.path,
        });
        expect((await callMcp(oauth, peer.mcpUrl)).status).toBe(200);
        await storage.update(peer.mcpUrl, (r) => ({ ...r!, tokens: { ...r!.tokens!, expires_at: 1 } }));
        await oauth.refresh();
        expect(peer.tokenRequests.map((r) => r.body.get('grant_type'))).toEqual([
          'authorization_code',
          'refresh_token',
        ]);
        for (const r of peer.tokenRequests) expect(r.headers.accept).toContain('application/json');
        const tokens = (await storage.getTokens(peer.mcpUrl))!;
        expect(tokens.expires_at).toBeGreaterThan(Date.now() / 1000 + 3000);
        expect(tokens.refresh_token).toBeTruthy();
      } finally {
        await peer.close();
      }
    }
  });

  it('note 08: provoked — Entra refuses the resource parameter; resource: false omits it, a string overrides it', async () => {
    const peer = await startQuirkyPeer({ rejectResource: true });
    try {
      const plain = new OAuth({
        mcpUrl: peer.mcpUrl,
        clientId: 'entra',
        tokenStorage: new Map(),
        login,
        lockDirectory: locks.path,
      });
      const error = await plain.authorize().catch((e: unknown) => e);
      expect(String(error)).toMatch(/AADSTS9010010|invalid_target/);

      const storage = new TokenStorage(memoryStore());
      const omit = new OAuth({
        mcpUrl: peer.mcpUrl,
        clientId: 'entra',
        resource: false,
        tokenStorage: storage,
        login,
        lockDirectory: locks.path,
      });
      const before = peer.tokenRequests.length;
      expect((await callMcp(omit, peer.mcpUrl)).status).toBe(200);
      await storage.update(peer.mcpUrl, (r) => ({ ...r!, tokens: { ...r!.tokens!, expires_at: 1 } }));
      await omit.refresh();
      expect(peer.authorizeRequests.at(-1)!.has('resource')).toBe(false);
      for (const r of peer.tokenRequests.slice(before)) expect(r.body.has('resource')).toBe(false);
    } finally {
      await peer.close();
    }
    const other = await startQuirkyPeer();
    try {
      const override = new OAuth({
        mcpUrl: other.mcpUrl,
        clientId: 'c',
        resource: 'api://gatehouse-mcp',
        tokenStorage: new Map(),
        login,
        lockDirectory: locks.path,
      });
      await override.authorize();
      expect(other.authorizeRequests.at(-1)!.get('resource')).toBe('api://gatehouse-mcp');
      expect(other.tokenRequests.at(-1)!.body.get('resource')).toBe('api://gatehouse-mcp');
    } finally {
      await other.close();
    }
  });
});

describe('note 09: no refresh token without offline_access', () => {
  it('note 09: provoked — a login without offline_access gets no refresh token from such an AS', async () => {
    const peer = await startQuirkyPeer({ offlineAccess: true });
    try {
      const body = new URLSearchParams({ grant_type: 'authorization_code', client_id: 'c', code: 'x' });
      // Authorize with the scope a naive client asks for (no offline_access) and redeem the code.
      const auth = await fetch(`${peer.url}/authorize?redirect_uri=http://localhost:1/cb&scope=read&state=s`, {
        redirect: 'manual',
      });
      body.set('code', new URL(auth.headers.get('location')!).searchParams.get('code')!);
      const tokens = await (await fetch(`${peer.url}/token`, { method: 'POST', body })).json();
      expect(tokens.refresh_token).toBeUndefined();
    } finally {
      await peer.close();
    }
  });

  it('note 09: requests offline_access when the AS lists it, and so gets a refresh token', async () => {
    const peer = await startQuirkyPeer({ offlineAccess: true });
    try {
      const storage = new TokenStorage(memoryStore());
      const oauth = new OAuth({
        mcpUrl: peer.mcpUrl,
        clientId: 'c',
        tokenStorage: storage,
        login,
        lockDirectory: locks.path,
      });
      await oauth.authorize();
      expect(peer.authorizeRequests.at(-1)!.get('scope')!.split(' ')).toContain('offline_access');
      expect((await storage.getTokens(peer.mcpUrl))?.refresh_token).toBeTruthy();
    } finally {
      await peer.close();
    }
    const plain = await startQuirkyPeer();
    try {
      const oauth = new OAuth({
        mcpUrl: plain.mcpUrl,
        clientId: 'c',
        tokenStorage: new Map(),
        login,
        lockDirectory: locks.path,
      });
      await oauth.authorize();
      expect(plain.authorizeRequests.at(-1)!.get('scope')!.split(' ')).not.toContain('offline_access');
    } finally {
      await plain.close();
    }
  });
});

describe('note 10: step-up loops', () => {
  it('note 10: a server naming only the missing scope → the union is requested; a never-satisfied one stops after maxStepUps', async () => {
    // Requests 1-2 want `read`; from 3 on `write` too, but the challenge names only what is missing.
    let need = 'read';
    const peer = await startQuirkyPeer({ challenge: 'missing', requiredScope: () => need });
    try {
      const oauth = new OAuth({
        mcpUrl: peer.mcpUrl,
        clientId: 'c',
        tokenStorage: new Map(),
        login,
        lockDirectory: locks.path,
      });
      expect((await callMcp(oauth, peer.mcpUrl)).status).toBe(200);
      need = 'read write'; // the challenge will name only `write`
      const response = await callMcp(oauth, peer.mcpUrl);
      expect(response.status).toBe(200);
      const granted = ((await response.json()) as { scope: string }).scope.split(' ');
      expect(granted).toEqual(expect.arrayContaining(['read', 'write'])); // union, not replacement
      // Now a scope the AS never grants: at most maxStepUps (2) more logins, then the 403 is returned.
      need = 'read write never'; // `never` is a scope this AS does not grant
      const logins = peer.authorizeRequests.length;
      const stuck = await callMcp(oauth, peer.mcpUrl);
      expect(stuck.status).toBe(403);
      expect(peer.authorizeRequests.length - logins).toBeLessThanOrEqual(2);
    } finally {
      await peer.close();
    }
  });
});

describe('note 11: security', () => {
  it('note 11: the authorization URL never reaches a shell: only plain http(s) URLs are opened', () => {
    for (const url of ['file:///etc/passwd', 'https://evil.example/$(id)', 'javascript:alert(1)', 'cmd://x"&calc']) {
      expect(() => assertOpenableUrl(url), url).toThrow(AuthenticationError);
    }
    expect(assertOpenableUrl('https://as.example/authorize?a=1&b=2').href).toBe('https://as.example/authorize?a=1&b=2');
  });

  it('note 11: the file store holds JSON only (no pickle-like formats)', async () => {
    const dir = await temporaryDirectory('interop-json-only');
    try {
      const storage = new TokenStorage(fileStore({ directory: dir.path }));
      await storage.saveTokens(stack.mcpUrl, { access_token: 'a', token_type: 'Bearer', refresh_token: 'r' });
      const files = (await readdir(dir.path, { recursive: true })).filter((f) => !f.endsWith('.lock'));
      expect(files.length).toBeGreaterThan(0);
      for (const f of files) {
        const text = await readFile(`${dir.path}/${f}`, 'utf8').catch(() => undefined);
        if (text !== undefined) expect(() => JSON.parse(text), f).not.toThrow();
      }
    } finally {
      await dir.remove();
    }
  });

  it('note 11: the callback server answers only on loopback and checks Host (DNS rebinding)', async () => {
    const server = await startCallbackServer();
    try {
      // A page on attacker.example whose name now resolves to 127.0.0.1 (DNS rebinding) sends its own Host.
      const status = await new Promise<number | undefined>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: server.port,
            path: '/callback?code=x&state=y',
            headers: { host: `attacker.example:${server.port}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode);
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(421);
      const external = Object.values(networkInterfaces())
        .flat()
        .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
      if (external) {
        const reached = await new Promise<boolean>((resolve) => {
          const socket = netConnect({ host: external, port: server.port });
          socket.once('connect', () => {
            socket.destroy();
            resolve(true);
          });
          socket.once('error', () => resolve(false));
        });
        expect(reached, `reachable on ${external}`).toBe(false);
      }
    } finally {
      await server.close();
    }
  });
});
