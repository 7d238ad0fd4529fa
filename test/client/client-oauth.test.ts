import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, Client, OAuth } from '../../src/client/index.js';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';

describe('Client with OAuth against the demo stack', () => {
  let stack: DemoStack;
  beforeAll(async () => {
    stack = await startDemoStack();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('logs in headlessly with an OAuth and calls whoami', async () => {
    const oauth = new OAuth({
      tokenStorage: 'memory',
      mcpUrl: stack.mcpUrl,
      login: { username: stack.username, password: stack.password },
    });
    await using client = new Client(stack.mcpUrl, { auth: oauth });
    const { data } = await client.callTool<{ subject: string; scopes: string[] }>('whoami');
    expect(data.subject).toBe(stack.username);
    expect(data.scopes).toContain('mcp:tools');
    expect((await oauth.tokens())?.access_token).toBeTruthy();
  });

  it('reuses the OAuth’s tokens for a second client without logging in again', async () => {
    const events: string[] = [];
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      login: { username: stack.username, password: stack.password },
      onEvent: (event) => events.push(event.type),
      tokenStorage: 'memory', // not the default store, where the tests above already logged in
    });
    await new Client(stack.mcpUrl, { auth: oauth }).connect().then((c) => c.close());
    const redirects = events.filter((type) => type === 'authorization-redirect').length;
    expect(redirects).toBe(1);
    await using again = new Client(stack.mcpUrl, { auth: oauth });
    expect((await again.callTool<{ subject: string }>('whoami')).data.subject).toBe(stack.username);
    expect(events.filter((type) => type === 'authorization-redirect').length).toBe(redirects);
  });

  it('accepts the access token as a bearer string', async () => {
    const oauth = new OAuth({
      tokenStorage: 'memory',
      mcpUrl: stack.mcpUrl,
      login: { username: stack.username, password: stack.password },
    });
    await oauth.authorize();
    const token = (await oauth.tokens())?.access_token;
    expect(token).toBeTruthy();
    await using client = new Client(stack.mcpUrl, { auth: token! });
    expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe(stack.username);
  });

  it('works as an mcpServers entry', async () => {
    const oauth = new OAuth({ tokenStorage: 'memory', login: { username: stack.username, password: stack.password } });
    await using client = new Client({ mcpServers: { demo: { url: stack.mcpUrl, auth: oauth } } });
    expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe(stack.username);
  });

  it('fails with an AuthenticationError without credentials', async () => {
    const client = new Client(stack.mcpUrl);
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).hint).toMatch(/auth/);
  });

  it('fails with an AuthenticationError for a token the server does not accept', async () => {
    await expect(new Client(stack.mcpUrl, { auth: 'not-a-jwt' }).connect()).rejects.toBeInstanceOf(AuthenticationError);
  });
});
