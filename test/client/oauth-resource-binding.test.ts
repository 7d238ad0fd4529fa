import { Client as SdkClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth } from '../../src/client/index.js';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

// Two MCP servers on one authorization server, and a third behind another authorization server.
let shared: OAuthTestStack;
let other: OAuthTestStack;
const locks = await temporaryDirectory('oauth-binding-locks');
beforeAll(async () => {
  [shared, other] = await Promise.all([startOAuthTestStack({ servers: 2 }), startOAuthTestStack()]);
});
afterAll(async () => {
  await Promise.all([shared.close(), other.close()]);
  await locks.remove();
});

const login = { username: 'demo', password: 'demo' };

/** The bearer tokens a server received since `from`, decoded: who issued each and for whom. */
function tokensSeen(stack: OAuthTestStack, mcpUrl: string, from = 0) {
  return stack.authorizationHeaders
    .get(mcpUrl)!
    .slice(from)
    .filter((header) => header !== '')
    .map((header) => {
      const claims = decodeJwt(header.replace(/^Bearer /, ''));
      return { iss: claims.iss, aud: claims.aud };
    });
}

function expectOnlyOwnTokens(stack: OAuthTestStack, mcpUrl: string, from = 0) {
  const seen = tokensSeen(stack, mcpUrl, from);
  expect(seen.length).toBeGreaterThan(0);
  for (const token of seen) expect(token).toEqual({ iss: stack.issuer, aud: mcpUrl });
}

describe('credentials bound to their resource', () => {
  it('one OAuth shared by two mcpServers entries on one authorization server sends each server its own token', async () => {
    const [a, b] = shared.mcpUrls as [string, string];
    const oauth = new OAuth({ login, tokenStorage: new Map(), lockDirectory: locks.path });
    const before = [a, b].map((url) => shared.authorizationHeaders.get(url)!.length);
    await using client = new Client({ mcpServers: { a: { url: a, auth: oauth }, b: { url: b, auth: oauth } } });
    expect((await client.callTool<{ subject: string }>('a_whoami')).data.subject).toBe('demo');
    expect((await client.callTool<{ subject: string }>('b_whoami')).data.subject).toBe('demo');
    expectOnlyOwnTokens(shared, a, before[0]);
    expectOnlyOwnTokens(shared, b, before[1]);
    expect(tokensSeen(shared, a, before[0]).length).toBeGreaterThan(1);
  });

  it('one OAuth bound to server A (mcpUrl) and shared with server B on another authorization server', async () => {
    const [a] = shared.mcpUrls as [string];
    const b = other.mcpUrl;
    const oauth = new OAuth({ mcpUrl: a, login, tokenStorage: new Map(), lockDirectory: locks.path });
    const fromA = shared.authorizationHeaders.get(a)!.length;
    const fromB = other.authorizationHeaders.get(b)!.length;
    await using client = new Client({ mcpServers: { a: { url: a, auth: oauth }, b: { url: b, auth: oauth } } });
    await client.callTool('a_whoami');
    await client.callTool('b_whoami');
    await client.callTool('a_whoami');
    expectOnlyOwnTokens(shared, a, fromA);
    expectOnlyOwnTokens(other, b, fromB);
    // The OAuth itself still holds server A's credential.
    expect(decodeJwt((await oauth.tokens())!.access_token).aud).toBe(a);
  });

  it('one wrapped fetch shared by two SDK transports to servers on two authorization servers', async () => {
    const a = shared.mcpUrls[1]!;
    const b = other.mcpUrl;
    const oauth = new OAuth({ login, tokenStorage: new Map(), lockDirectory: locks.path });
    const wrapped = oauth.wrapFetch();
    const fromA = shared.authorizationHeaders.get(a)!.length;
    const fromB = other.authorizationHeaders.get(b)!.length;
    for (const url of [a, b, a]) {
      const sdk = new SdkClient({ name: 'binding-test', version: '1.0.0' });
      await sdk.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: wrapped }));
      await sdk.callTool({ name: 'whoami', arguments: {} });
      await sdk.close();
    }
    expectOnlyOwnTokens(shared, a, fromA);
    expectOnlyOwnTokens(other, b, fromB);
  });
});
