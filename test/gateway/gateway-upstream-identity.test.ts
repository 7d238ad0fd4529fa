import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ProtocolErrorCode,
  UrlElicitationRequiredError as SdkUrlElicitationRequiredError,
} from '@modelcontextprotocol/client';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/authorization-server/users.js';
import { Client } from '../../src/client/client.js';
import { UrlElicitationRequiredError } from '../../src/client/errors.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { startGateway } from '../../src/gateway/index.js';
import { listen, toNodeListener } from '../../src/server/node.js';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { authorizationUrl, pkce, register } from '../authorization-server/helpers.js';
import { type GithubDouble, startGithubDouble } from '../upstream/github-double.js';
import { type OidcDouble, startOidcDouble } from '../upstream/oidc-double.js';
import {
  cleanup,
  EVERYTHING,
  freePort,
  type GatewayProcess,
  headlessOAuth,
  sdkClient,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

/**
 * An MCP server without OAuth that records every header it receives; its tool reads the GitHub user of the bearer
 * token it was given, at the GitHub double (what a real GitHub-backed server does).
 */
async function githubBackedUpstream(gh: GithubDouble) {
  const seen: Array<Record<string, string>> = [];
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'github-backed', version: '1.0.0' });
    server.registerTool('me', { description: 'The GitHub user of the token this server was given.' }, async (ctx) => {
      const authorization = ctx.http?.req?.headers.get('authorization') ?? seen.at(-1)?.['authorization'] ?? '';
      const user = await fetch(`${gh.apiUrl}/user`, { headers: { authorization } });
      const body = { status: user.status, login: user.ok ? ((await user.json()) as { login: string }).login : null };
      return { content: [{ type: 'text', text: JSON.stringify(body) }], structuredContent: body };
    });
    return server;
  });
  const running = await listen(
    toNodeListener(async (request) => {
      seen.push(Object.fromEntries(request.headers));
      return mcp.fetch(request);
    }),
  );
  return { url: `${running.url}/mcp`, seen, close: () => running.close() };
}

/**
 * A browser for the gateway's origin (a cookie jar), signed in to the embedded AS as `username`, that links the
 * user's GitHub account at the link page — the URL the gateway's error names.
 */
async function linkProvider(
  gateway: string,
  resource: string,
  username: string,
  password: string,
  provider: string,
  upstreamLogin: { username: string; password: string },
) {
  const jar = new Map<string, string>();
  const browserFetch: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    const headers = new Headers(init?.headers);
    if (url.origin === gateway && jar.size) {
      const own = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      headers.set('cookie', [headers.get('cookie'), own].filter(Boolean).join('; '));
    }
    const response = await fetch(input, { ...init, headers });
    if (url.origin === gateway) {
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const eq = pair!.indexOf('=');
        jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
      }
    }
    return response;
  };
  // Any sign-in at the AS leaves the browser its session, which the link page needs.
  const callback = 'http://127.0.0.1:9/callback';
  const client = await register({ url: gateway }, { redirect_uris: [callback], client_name: 'Browser' });
  const { challenge } = pkce();
  const signedIn = await headlessAuthorize(
    authorizationUrl(
      { url: gateway },
      { clientId: String(client.body['client_id']), redirectUri: callback, challenge, scope: 'mcp:tools', resource },
    ),
    callback,
    { username, password },
    browserFetch,
  );
  expect(signedIn.searchParams.get('code')).toBeTruthy();
  const upstreamCallback = await headlessAuthorize(
    new URL(`${gateway}/upstream/${provider}/link`),
    `${gateway}/upstream/callback`,
    upstreamLogin,
    browserFetch,
  );
  const done = await browserFetch(upstreamCallback, { redirect: 'manual' });
  const page = await done.text();
  expect(done.status, page).toBe(200);
  expect(page).toContain('is connected');
}

/** A gateway process with password users alice, bob and carol, GitHub (the double) as identity provider. */
async function githubGateway(gh: GithubDouble, mcpServers: Record<string, unknown>): Promise<GatewayProcess> {
  const dir = await tempDir();
  const users = join(dir, 'users.json');
  await writeFile(
    users,
    JSON.stringify({
      users: await Promise.all(
        ['alice', 'bob', 'carol'].map(async (u) => ({
          username: u,
          passwordHash: await hashPassword(`${u}-password`),
        })),
      ),
    }),
  );
  const config = join(dir, 'gateway.json');
  await writeFile(
    config,
    JSON.stringify({
      users,
      identityProviders: [
        {
          spec: 'github',
          clientId: 'gh-client',
          clientSecret: '${GH_SECRET}',
          baseUrl: gh.url,
          apiBaseUrl: gh.apiUrl,
          scopes: ['read:user', 'repo'],
        },
      ],
      mcpServers,
    }),
  );
  return startGatewayProcess(['--config', config], {
    env: { GH_SECRET: 'gh-secret', GATEHOUSE_UPSTREAM_KEY: generateEncryptionKey() },
    dataDir: dir,
  });
}

/** server-everything as a per-user stdio upstream that gets the user's GitHub token in `GITHUB_TOKEN`. */
const GITHUB_TOOLS = {
  command: process.execPath,
  args: [EVERYTHING],
  upstreamIdentity: { provider: 'github', env: 'GITHUB_TOKEN' },
};

/** The `GITHUB_TOKEN` server-everything's `get-env` reports, through a Gatehouse Client. */
async function githubTokenOf(client: Client): Promise<string> {
  const { data } = await client.callTool<Record<string, string>>('get-env');
  return data['GITHUB_TOKEN']!;
}

describe('gateway: the user’s upstream-identity token (GitHub) as the upstream’s credential', () => {
  let gh: GithubDouble;
  let upstream: Awaited<ReturnType<typeof githubBackedUpstream>>;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    gh = await startGithubDouble({
      clientId: 'gh-client',
      clientSecret: 'gh-secret',
      users: [
        { id: 7, login: 'alice-gh', password: 'alice-gh-password' },
        { id: 8, login: 'carol-gh', password: 'carol-gh-password' },
      ],
    });
    upstream = await githubBackedUpstream(gh);
    gateway = await githubGateway(gh, {
      api: { url: upstream.url, upstreamIdentity: { provider: 'github', scopes: ['repo'] } },
      tools: GITHUB_TOOLS,
    });
  }, 60_000);

  afterAll(async () => {
    await cleanup();
    await upstream?.close();
    await gh?.close();
  });

  it('answers a user who has not linked GitHub with a JSON-RPC error naming the link URL, and audits it', async () => {
    const linkUrl = `${gateway.url}/upstream/github/link`;
    for (const name of ['api', 'tools']) {
      const mcpUrl = gateway.mcp[name]!;
      await expect(sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'bob', 'bob-password'))).rejects.toThrow(
        `upstream "${name}" needs the user's own github token: the user has not linked GitHub; they can grant access at ${linkUrl}`,
      );
    }
    expect(upstream.seen).toEqual([]); // nothing reached the upstream
    const audited = () => gateway.logs().filter((l) => l['msg'] === 'mcp request' && l['subject'] === 'bob');
    await waitFor(() => JSON.stringify(audited()), /"upstream":"tools"/);
    const refused = audited();
    expect(refused.map((l) => [l['upstream'], l['outcome']])).toEqual([
      ['api', 'error'],
      ['tools', 'error'],
    ]);
    for (const line of refused) {
      // The caller gets the reason as it is, not wrapped in a transport failure.
      expect((line['error'] as { message: string }).message).toBe(
        `upstream "${line['upstream']}" needs the user's own github token: the user has not linked GitHub; they can grant access at ${linkUrl}`,
      );
    }
  });

  it('answers a client that declared URL elicitation with -32042 (the SDK’s UrlElicitationRequiredError) naming the link page', async () => {
    const linkUrl = `${gateway.url}/upstream/github/link`;
    for (const name of ['api', 'tools']) {
      const mcpUrl = gateway.mcp[name]!;
      const error = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'bob', 'bob-password'), {
        capabilities: { elicitation: { url: {} } },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SdkUrlElicitationRequiredError);
      const required = error as SdkUrlElicitationRequiredError;
      expect(required.code).toBe(ProtocolErrorCode.UrlElicitationRequired);
      expect(required.message).toContain(
        `upstream "${name}" needs the user's own github token: the user has not linked GitHub; they can grant access at ${linkUrl}`,
      );
      expect(required.elicitations).toEqual([
        { mode: 'url', url: linkUrl, elicitationId: expect.any(String), message: expect.stringContaining('github') },
      ]);
    }
    expect(upstream.seen).toEqual([]);
  });

  it('Gatehouse’s Client offers the page to its elicitationHandler; declined, it throws UrlElicitationRequiredError', async () => {
    const mcpUrl = gateway.mcp['api']!;
    const offered: unknown[] = [];
    const client = new Client(mcpUrl, {
      auth: headlessOAuth(mcpUrl, 'bob', 'bob-password'),
      elicitationHandler: async (params) => {
        offered.push(params);
        return { action: 'decline' };
      },
    });
    const error = await client.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    await client.close();
    const linkUrl = `${gateway.url}/upstream/github/link`;
    expect(error).toBeInstanceOf(UrlElicitationRequiredError);
    expect((error as UrlElicitationRequiredError).url).toBe(linkUrl);
    expect((error as UrlElicitationRequiredError).hint).toContain(linkUrl);
    expect(offered).toEqual([
      { mode: 'url', url: linkUrl, elicitationId: expect.any(String), message: expect.stringContaining('github') },
    ]);
  });

  it('Gatehouse’s Client connects once the user linked GitHub at the page it was offered', async () => {
    const mcpUrl = gateway.mcp['api']!;
    const offered: string[] = [];
    let linked: Promise<void> | undefined;
    await using client = new Client(mcpUrl, {
      auth: headlessOAuth(mcpUrl, 'carol', 'carol-password'),
      elicitationHandler: async (params) => {
        if (params.mode !== 'url') return { action: 'decline' };
        offered.push(params.url);
        // The user opens the page in their browser and links their GitHub account there.
        linked = linkProvider(gateway.url, mcpUrl, 'carol', 'carol-password', 'github', {
          username: 'carol-gh',
          password: 'carol-gh-password',
        });
        return { action: 'accept' };
      },
    });
    const { data } = await client.callTool('me');
    await linked;
    expect(data).toEqual({ status: 200, login: 'carol-gh' });
    expect(offered).toEqual([`${gateway.url}/upstream/github/link`]);
  });

  it('after linking at that URL, an HTTP upstream gets the user’s GitHub token as Authorization: Bearer', async () => {
    await linkProvider(gateway.url, gateway.mcp['api']!, 'alice', 'alice-password', 'github', {
      username: 'alice-gh',
      password: 'alice-gh-password',
    });
    const mcpUrl = gateway.mcp['api']!;
    const oauth = headlessOAuth(mcpUrl, 'alice', 'alice-password');
    const client = await sdkClient(mcpUrl, oauth);
    const result = await client.callTool({ name: 'me', arguments: {} });
    expect(result.structuredContent).toEqual({ status: 200, login: 'alice-gh' });

    const callerToken = (await oauth.tokens())!.access_token;
    const githubTokens = gh.liveAccessTokens();
    expect(upstream.seen.length).toBeGreaterThan(1);
    for (const headers of upstream.seen) {
      for (const value of Object.values(headers)) expect(value).not.toContain(callerToken);
      expect(githubTokens).toContain(headers['authorization']!.replace(/^Bearer /, ''));
    }
  });

  it('a per-user stdio upstream gets it in its environment, and never the caller’s token', async () => {
    const mcpUrl = gateway.mcp['tools']!;
    const oauth = headlessOAuth(mcpUrl, 'alice', 'alice-password');
    const client = await sdkClient(mcpUrl, oauth);
    const result = await client.callTool({ name: 'get-env', arguments: {} });
    const env = JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as Record<string, string>;
    expect(gh.liveAccessTokens()).toContain(env['GITHUB_TOKEN']);
    expect(JSON.stringify(env)).not.toContain((await oauth.tokens())!.access_token);
    // GitHub's token never reaches the caller or the audit trail.
    expect(gateway.stdout()).not.toContain(env['GITHUB_TOKEN']);
  });
});

describe('gateway: a per-user stdio process whose GitHub token expires', () => {
  let gh: GithubDouble;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    // GitHub App-style expiring tokens, short: the vault refreshes 30 s before expiry, so each is served for 6 s.
    gh = await startGithubDouble({
      clientId: 'gh-client',
      clientSecret: 'gh-secret',
      users: [{ id: 7, login: 'alice-gh', password: 'alice-gh-password' }],
      accessTokenTtl: 36,
    });
    gateway = await githubGateway(gh, { tools: GITHUB_TOOLS });
  }, 60_000);

  afterAll(async () => {
    await cleanup();
    await gh?.close();
  });

  it('restarts it with the refreshed token in the same MCP session; revoked, the Client is offered the link page and retries', async () => {
    const mcpUrl = gateway.mcp['tools']!;
    const githubLogin = { username: 'alice-gh', password: 'alice-gh-password' };
    await linkProvider(gateway.url, mcpUrl, 'alice', 'alice-password', 'github', githubLogin);
    const offered: string[] = [];
    let relinked: Promise<void> | undefined;
    await using client = new Client(mcpUrl, {
      auth: headlessOAuth(mcpUrl, 'alice', 'alice-password'),
      elicitationHandler: async (params) => {
        if (params.mode !== 'url') return { action: 'decline' };
        offered.push(params.url);
        relinked = linkProvider(gateway.url, mcpUrl, 'alice', 'alice-password', 'github', githubLogin);
        return { action: 'accept' };
      },
    });
    const first = await githubTokenOf(client);
    const sessionId = client.sdk().transport?.sessionId;
    expect(sessionId).toBeTruthy();
    const restarts = () => gateway.logs().filter((l) => l['msg'] === 'upstream process restarted with a renewed token');

    // A call still in flight when the token is due is answered by the old process; the restart waits for it.
    const answered: string[] = [];
    const longCall = client
      .callTool('trigger-long-running-operation', { duration: 10, steps: 2 })
      .then(({ content }) => answered.push(`long: ${(content[0] as { text: string }).text}`));
    await new Promise((resolve) => setTimeout(resolve, 7000)); // the token is due for a refresh
    const second = await githubTokenOf(client);
    answered.push('get-env');
    await longCall;
    expect(answered).toEqual(['long: Long running operation completed. Duration: 10 seconds, Steps: 2.', 'get-env']);
    expect(second).not.toBe(first);
    expect(gh.liveAccessTokens()).toContain(second);
    // The gateway logs before it answers, but its stdout reaches this process through a pipe, later under load.
    await expect.poll(() => restarts().length, { timeout: 5000 }).toBe(1);
    expect(client.sdk().transport?.sessionId).toBe(sessionId); // no new session: the handshake was replayed

    // GitHub revokes the grant: the next renewal finds nothing to refresh, and the call needs the link page.
    gh.revokeAll('alice-gh');
    await new Promise((resolve) => setTimeout(resolve, 7000));
    const third = await githubTokenOf(client);
    await relinked;
    expect(offered).toEqual([`${gateway.url}/upstream/github/link`]);
    expect(gh.liveAccessTokens()).toContain(third);
    expect(third).not.toBe(second);
    expect(client.sdk().transport?.sessionId).toBe(sessionId);
    expect(gateway.stdout()).not.toContain(third);
  }, 60_000);
});

describe('gatehouse gateway --identity-provider oidc:… --upstream-identity NAME=VAR -- COMMAND', () => {
  let idp: OidcDouble;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    const port = await freePort();
    idp = await startOidcDouble({
      clientId: 'gatehouse',
      clientSecret: 'corp-secret-of-enough-length-0123456789',
      redirectUri: `http://127.0.0.1:${port}/upstream/callback`,
    });
    gateway = await startGatewayProcess(
      [
        ...['--port', String(port), '--superuser', 'alice'],
        ...['--identity-provider', `corp=oidc:${idp.url}`, '--upstream-identity', 'corp=CORP_TOKEN'],
        ...['--', process.execPath, EVERYTHING],
      ],
      {
        env: {
          GATEHOUSE_SUPERUSER_PASSWORD: 'alice-password',
          GATEHOUSE_UPSTREAM_CORP_CLIENT_ID: 'gatehouse',
          GATEHOUSE_UPSTREAM_CORP_CLIENT_SECRET: 'corp-secret-of-enough-length-0123456789',
          GATEHOUSE_UPSTREAM_KEY: generateEncryptionKey(),
        },
      },
    );
  }, 60_000);

  afterAll(async () => {
    await cleanup();
    await idp?.close();
  });

  it('puts the user’s token at the OIDC provider in the stdio server’s CORP_TOKEN', async () => {
    const mcpUrl = gateway.mcp['mcp']!;
    expect(gateway.stderr()).toContain(
      `identity provider corp: sign in with it, or link it at ${gateway.url}/upstream/corp/link`,
    );
    await expect(sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'alice', 'alice-password'))).rejects.toThrow(
      `${gateway.url}/upstream/corp/link`,
    );
    await linkProvider(gateway.url, mcpUrl, 'alice', 'alice-password', 'corp', { username: 'carol', password: 'x' });
    const oauth = headlessOAuth(mcpUrl, 'alice', 'alice-password');
    const client = await sdkClient(mcpUrl, oauth);
    const result = await client.callTool({ name: 'get-env', arguments: {} });
    const env = JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as Record<string, string>;
    expect(env['CORP_TOKEN']).toBeTruthy();
    expect(env['CORP_TOKEN']).not.toBe((await oauth.tokens())!.access_token);
    // A token of the IdP, for carol: its userinfo endpoint answers it.
    const me = await fetch(`${idp.url}/me`, { headers: { authorization: `Bearer ${env['CORP_TOKEN']}` } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { sub: string }).sub).toBe('carol');
  });
});

describe('gateway: upstreamIdentity config errors', () => {
  afterAll(cleanup);

  const start = async (config: Record<string, unknown>) =>
    startGateway({ port: 0, store: 'memory', superuser: 'admin', ...config } as never, {
      env: { GATEHOUSE_SUPERUSER_PASSWORD: 'a long password', GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID: 'id' },
      dataDir: await tempDir(),
    });

  it('refuses publicTools, tokenExchange beside it, an unknown provider, and an external issuer without resource', async () => {
    const identity = { provider: 'github' };
    await expect(
      start({
        identityProviders: ['github'],
        mcpServers: { api: { url: 'http://127.0.0.1:9/mcp', upstreamIdentity: identity, publicTools: ['echo'] } },
      }),
    ).rejects.toThrow(/publicTools and upstreamIdentity do not go together/);
    await expect(
      start({
        identityProviders: ['github'],
        mcpServers: {
          api: {
            url: 'http://127.0.0.1:9/mcp',
            upstreamIdentity: identity,
            tokenExchange: { resource: 'http://127.0.0.1:9/mcp' },
          },
        },
      }),
    ).rejects.toThrow(/one token, from tokenExchange or from upstreamIdentity/);
    await expect(start({ mcpServers: { api: { command: 'true', upstreamIdentity: identity } } })).rejects.toThrow(
      /names the provider "github", which is not in identityProviders/,
    );
    await expect(
      start({ issuer: 'https://as.example.com', mcpServers: { api: { command: 'true', upstreamIdentity: identity } } }),
    ).rejects.toThrow(/needs "resource" with an external issuer/);
    await expect(
      start({
        issuer: 'https://as.example.com',
        identityProviders: ['github'],
        mcpServers: { api: { command: 'true' } },
      }),
    ).rejects.toThrow(/identityProviders configure the embedded authorization server/);
  });
});
