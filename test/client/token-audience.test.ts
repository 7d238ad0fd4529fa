// docs/login.md and docs/client.md promise that a token only ever goes to the server it was issued for, that the
// authorization response's `iss` and the metadata's `issuer`/`resource` are checked, and that a mismatch stops the
// login with a typed error before any code or credential is sent. Each case drives the real `Client`/`OAuth`
// against a real authorization server and `protect()`-ed MCP server, made to misbehave in one respect.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, DiscoveryError, IssuerMismatchError, OAuth } from '../../src/client/index.js';
import { listen, type RunningServer } from '../../src/server/node.js';
import { type FrontHandler, type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

const login = { username: 'demo', password: 'demo' };
let front: { mcp?: FrontHandler; as?: FrontHandler } = {};
let stack: OAuthTestStack;
let elsewhere: RunningServer;
/** Another authorization server, which the MCP server's metadata may come to name; its token endpoint only records. */
let movedTo: OAuthTestStack;
const tokenBodiesAtMovedTo: string[] = [];
/** The Authorization header of every request another origin received. */
const seenElsewhere: string[] = [];
const locks = await temporaryDirectory('token-audience-locks');

beforeAll(async () => {
  stack = await startOAuthTestStack({
    front: { mcp: (req, res) => front.mcp?.(req, res) ?? false, as: (req, res) => front.as?.(req, res) ?? false },
  });
  movedTo = await startOAuthTestStack({
    front: {
      as: (req, res) => {
        if (req.method !== 'POST' || !req.url?.includes('/token')) return false;
        let body = '';
        req.on('data', (chunk) => (body += chunk));
        req.on('end', () => {
          tokenBodiesAtMovedTo.push(body);
          res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_grant"}');
        });
        return true;
      },
    },
  });
  elsewhere = await listen((req: IncomingMessage, res: ServerResponse) => {
    seenElsewhere.push(req.headers.authorization ?? '');
    res.writeHead(404).end();
  });
});
afterAll(async () => {
  await Promise.all([stack?.close(), movedTo?.close(), elsewhere?.close()]);
  await locks.remove();
});

const tokenRequests = () => stack.asRequests.filter((r) => r.startsWith('POST') && r.includes('/token'));
const registrations = () => stack.asRequests.filter((r) => r.startsWith('POST') && r.includes('/reg'));

describe('a token goes only to the server it was issued for', () => {
  it('an MCP server redirecting (307) to another origin: that origin never receives the token', async () => {
    const oauth = new OAuth({ login, tokenStorage: new Map(), lockDirectory: locks.path });
    await using client = new Client(stack.mcpUrl, { auth: oauth });
    await client.callTool('whoami');
    const token = (await oauth.tokens())!.access_token;
    front = {
      mcp: (req, res) => {
        if (req.method !== 'POST') return false;
        res.writeHead(307, { location: `${elsewhere.url}/mcp` }).end();
        return true;
      },
    };
    let error: unknown;
    try {
      error = await client.callTool('whoami').then(
        () => undefined,
        (e: unknown) => e,
      );
    } finally {
      front = {};
    }
    // The call fails saying the redirect was not followed; the other origin got no request, let alone the token.
    expect(String((error as Error)?.cause ?? error)).toContain('not followed');
    expect(seenElsewhere).toEqual([]);
    expect(stack.authorizationHeaders.get(stack.mcpUrl)!.at(-1)).toBe(`Bearer ${token}`);
  });

  /** A login against the misbehaving server fails with `expected`, having registered nothing and asked no token. */
  async function refusedBeforeSendingAnything(misbehave: typeof front, expected: new (...args: never[]) => Error) {
    const before = { tokens: tokenRequests().length, registrations: registrations().length };
    front = misbehave;
    try {
      const oauth = new OAuth({ mcpUrl: stack.mcpUrl, login, tokenStorage: new Map(), lockDirectory: locks.path });
      await expect(oauth.authorize()).rejects.toBeInstanceOf(expected);
    } finally {
      front = {};
    }
    expect(registrations().length).toBe(before.registrations);
    expect(tokenRequests().length).toBe(before.tokens);
  }

  /** Answers requests under `prefix` with `body` as JSON. */
  const serving =
    (prefix: string, body: () => unknown): FrontHandler =>
    (req, res) => {
      if (!req.url?.startsWith(prefix)) return false;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body()));
      return true;
    };

  it('protected-resource metadata naming another resource: DiscoveryError, no registration, no token request', async () => {
    const resource = { resource: `${elsewhere.url}/mcp`, authorization_servers: [stack.issuer] };
    await refusedBeforeSendingAnything(
      { mcp: serving('/.well-known/oauth-protected-resource', () => resource) },
      DiscoveryError,
    );
  });

  it('authorization-server metadata naming another issuer: IssuerMismatchError, nothing sent to it', async () => {
    const metadata = await (await fetch(`${stack.issuer}/.well-known/oauth-authorization-server`)).json();
    await refusedBeforeSendingAnything(
      { as: serving('/.well-known/', () => ({ ...metadata, issuer: elsewhere.url })) },
      IssuerMismatchError,
    );
  });
  // MCP: no S256 in code_challenge_methods_supported (or no list at all) and the client must not go on; checked
  // before registering, so the refused server is left no orphan registration.
  for (const [name, methods] of [
    ['listing only plain', ['plain']],
    ['without code_challenge_methods_supported', undefined],
  ] as const) {
    it(`authorization-server metadata ${name}: ERR_PKCE_UNSUPPORTED through Client, no registration, nothing sent`, async () => {
      const metadata = await (await fetch(`${stack.issuer}/.well-known/oauth-authorization-server`)).json();
      const from = stack.asRequests.length;
      front = {
        as: serving('/.well-known/', () => ({ ...metadata, code_challenge_methods_supported: methods })),
      };
      let error: unknown;
      try {
        const oauth = new OAuth({ login, tokenStorage: new Map(), lockDirectory: locks.path });
        await using client = new Client(stack.mcpUrl, { auth: oauth });
        error = await client.callTool('whoami').catch((e: unknown) => e);
      } finally {
        front = {};
      }
      const sent = stack.asRequests.slice(from);
      expect(sent.some((r) => r.startsWith('GET /.well-known/'))).toBe(true);
      expect(sent.filter((r) => !r.startsWith('GET /.well-known/'))).toEqual([]); // no /reg, /auth, /token
      expect(error).toBeInstanceOf(DiscoveryError);
      expect(error).toMatchObject({ code: 'ERR_PKCE_UNSUPPORTED' });
      expect((error as Error).message).toContain(stack.issuer);
      expect((error as Error).message).toMatch(methods ? /lists only plain/ : /missing/);
    });
  }

  it('a refusal for want of S256 is not cached: once the metadata lists it, the same OAuth logs in', async () => {
    const metadata = await (await fetch(`${stack.issuer}/.well-known/oauth-authorization-server`)).json();
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, login, tokenStorage: new Map(), lockDirectory: locks.path });
    front = { as: serving('/.well-known/', () => ({ ...metadata, code_challenge_methods_supported: undefined })) };
    try {
      await expect(oauth.authorize()).rejects.toMatchObject({ code: 'ERR_PKCE_UNSUPPORTED' });
    } finally {
      front = {};
    }
    await expect(oauth.authorize()).resolves.toBe('logged-in');
  });

  it('a login sends PKCE S256, state and the resource on the authorization request', async () => {
    const from = stack.asRequests.length;
    await new OAuth({ mcpUrl: stack.mcpUrl, login, tokenStorage: new Map(), lockDirectory: locks.path }).authorize();
    const authorization = stack.asRequests.slice(from).find((r) => r.startsWith('GET /auth?'))!;
    const params = new URL(authorization.slice(4), stack.issuer).searchParams;
    expect(params.get('code_challenge_method')).toBe('S256');
    expect(params.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.get('state')!.length).toBeGreaterThanOrEqual(32);
    expect(params.get('resource')).toBe(stack.mcpUrl);
  });

  it('metadata that comes to name another authorization server: none of the old tokens reach it', async () => {
    const oauth = new OAuth({ login, tokenStorage: new Map(), lockDirectory: locks.path });
    await using client = new Client(stack.mcpUrl, { auth: oauth });
    await client.callTool('whoami');
    const old = (await oauth.tokens())!;
    expect(old.refresh_token).toBeTruthy();
    const metadataUrl = `${new URL(stack.mcpUrl).origin}/.well-known/oauth-protected-resource/mcp`;
    front = {
      mcp: (req, res) => {
        if (req.url?.startsWith('/.well-known/oauth-protected-resource')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ resource: stack.mcpUrl, authorization_servers: [movedTo.issuer] }));
        } else {
          res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${metadataUrl}"` }).end();
        }
        return true;
      },
    };
    try {
      await expect(client.callTool('whoami')).rejects.toThrow();
    } finally {
      front = {};
    }
    // The move was noticed: the client registered anew there (docs/login.md, "Registration")...
    const clientIds = (requests: string[]) =>
      requests
        .filter((r) => r.startsWith('GET /auth?'))
        .map((r) => new URL(r.slice(4), 'http://x').searchParams.get('client_id'));
    expect(movedTo.asRequests).toContain('POST /reg');
    const movedIds = clientIds(movedTo.asRequests);
    expect(movedIds.length).toBeGreaterThan(0);
    // ...never presenting the old registration, refresh token or access token to it.
    for (const id of movedIds) expect(clientIds(stack.asRequests)).not.toContain(id);
    const everything = [...movedTo.asRequests, ...tokenBodiesAtMovedTo].join('\n');
    expect(everything).not.toContain(old.refresh_token);
    expect(everything).not.toContain(old.access_token);
  });
});

describe('the authorization response is checked (RFC 9207 iss, state)', () => {
  /** An OAuth whose "browser" answers the callback itself, with the login's own state and the given `iss`. */
  function answering(iss: string | undefined) {
    return new OAuth({
      mcpUrl: stack.mcpUrl,
      tokenStorage: new Map(),
      lockDirectory: locks.path,
      timeoutMs: 10_000,
      redirectHandler: (url) => {
        const callback = new URL(url.searchParams.get('redirect_uri')!);
        callback.searchParams.set('code', 'a-code-from-somewhere');
        callback.searchParams.set('state', url.searchParams.get('state')!);
        if (iss !== undefined) callback.searchParams.set('iss', iss);
        void fetch(callback).catch(() => undefined);
      },
    });
  }

  it.each([
    ['names another authorization server', 'https://evil.example'],
    ['leaves out iss, which the server advertises', undefined],
  ])('a callback that %s: IssuerMismatchError, the code is never exchanged', async (_, iss) => {
    const before = tokenRequests().length;
    await expect(answering(iss).authorize()).rejects.toBeInstanceOf(IssuerMismatchError);
    expect(tokenRequests().length).toBe(before);
  });

  it('the same callback with the right iss is exchanged (so the cases above fail for iss alone)', async () => {
    const before = tokenRequests().length;
    // The code is made up, so the exchange fails at the authorization server: what matters is that it was tried.
    await expect(answering(stack.issuer).authorize()).rejects.not.toBeInstanceOf(IssuerMismatchError);
    expect(tokenRequests().length).toBeGreaterThan(before);
  });
});
