// docs/login.md: "Passing `authProvider: oauth` to an SDK transport works too, but then the SDK handles `401` itself
// and a browser login ends the request with `UnauthorizedError` (retry it: the tokens are there)". Driven here through
// the SDK's own Client and StreamableHTTPClientTransport against a real authorization server and protect()-ed server.
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscoveryError, OAuth } from '../../src/client/index.js';
import { type FrontHandler, type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

const login = { username: 'demo', password: 'demo' };
let front: FrontHandler | undefined;
let stack: OAuthTestStack;
const locks = await temporaryDirectory('sdk-auth-provider-locks');

beforeAll(async () => {
  stack = await startOAuthTestStack({ front: { as: (req, res) => front?.(req, res) ?? false } });
});
afterAll(async () => {
  await stack?.close();
  await locks.remove();
});

const connect = async (oauth: OAuth): Promise<Client> => {
  const client = new Client({ name: 'sdk-auth-provider-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: oauth }));
  return client;
};

describe('OAuth as the SDK transport’s authProvider', () => {
  it('the first connection ends in UnauthorizedError after the login; the retry calls the tool with the stored token', async () => {
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, login, tokenStorage: new Map(), lockDirectory: locks.path });
    await expect(connect(oauth)).rejects.toBeInstanceOf(UnauthorizedError);
    const client = await connect(oauth);
    try {
      const result = await client.callTool({ name: 'whoami', arguments: {} });
      expect(JSON.stringify(result.content)).toContain('demo');
      const token = (await oauth.tokens())!.access_token;
      expect(stack.authorizationHeaders.get(stack.mcpUrl)!.at(-1)).toBe(`Bearer ${token}`);
    } finally {
      await client.close();
    }
  });

  it('an authorization server without S256 is refused before registration on this path too', async () => {
    const metadata = await (await fetch(`${stack.issuer}/.well-known/oauth-authorization-server`)).json();
    const from = stack.asRequests.length;
    front = (req, res) => {
      if (!req.url?.startsWith('/.well-known/')) return false;
      const body = { ...metadata, code_challenge_methods_supported: ['plain'] };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      return true;
    };
    let error: unknown;
    try {
      const oauth = new OAuth({ mcpUrl: stack.mcpUrl, login, tokenStorage: new Map(), lockDirectory: locks.path });
      error = await connect(oauth).catch((e: unknown) => e);
    } finally {
      front = undefined;
    }
    const sent = stack.asRequests.slice(from);
    expect(sent.some((r) => r.startsWith('GET /.well-known/'))).toBe(true);
    expect(sent.filter((r) => !r.startsWith('GET /.well-known/'))).toEqual([]); // no /reg, /auth, /token
    expect(error).toBeInstanceOf(DiscoveryError);
    expect(error).toMatchObject({ code: 'ERR_PKCE_UNSUPPORTED' });
  });
});
