import type { ServerContext } from '@modelcontextprotocol/server';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AccessContext, ResourceAccessError } from '../../src/server/access-context.js';
import { createAuthProvider } from '../../src/server/auth-provider.js';
import type { ClientCredentials } from '../../src/server/client-auth.js';
import { createGrant, getAccessContext, TokenExchangeClient } from '../../src/server/grant.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import { mockAccessContext } from '../../src/testing/access-context.js';
import {
  startTestAuthorizationServer,
  type TestAuthorizationServer,
  type TokenExchangeOutcome,
} from '../../src/testing/test-authorization-server.js';
import { callTool, whoamiMcp } from './helpers.js';

const API = 'https://api.example.com';
const CALENDAR = 'https://calendar.example.com';
const BROKEN = 'https://broken.example.com';
const SECRET = 'mcp-server-secret-that-is-long-enough';

/** A tool context as the SDK passes it, carrying the verified caller. */
function ctxFor(token: string, subject = 'alice'): ServerContext {
  return { http: { authInfo: { token, clientId: 'c', scopes: [], extra: { subject } } } } as unknown as ServerContext;
}

describe('grant() against the test authorization server', () => {
  let as: TestAuthorizationServer;
  let userToken: string;

  beforeAll(async () => {
    as = await startTestAuthorizationServer({ clients: [{ clientId: 'mcp-server', clientSecret: SECRET }] });
    userToken = await as.mintToken({ subject: 'alice', scopes: ['mcp:tools'], audience: 'http://127.0.0.1:1/mcp' });
  });
  afterAll(() => as?.close());
  afterEach(() => {
    as.setTokenExchangeHandler(undefined);
    as.setUnavailable(false);
  });

  const newGrant = (credentials: ClientCredentials = { clientId: 'mcp-server', clientSecret: SECRET }) =>
    createGrant({ issuer: as.issuer, credentials });

  it('exchanges the caller token for one resource', async () => {
    const seen: Array<{ resource?: string; scopes: string[]; subject: string; clientId: string }> = [];
    as.setTokenExchangeHandler((request) => {
      seen.push(request);
      return {};
    });
    const tool = newGrant()(API, { scopes: ['read'] })(async (_ctx, access) => {
      expect(access.getStatus()).toBe('success');
      expect(access.hasErrors()).toBe(false);
      return access.access(API);
    });
    const result = await tool(ctxFor(userToken));
    expect(result.resource).toBe(API);
    expect(result.tokenType).toBe('Bearer');
    expect(result.scopes).toEqual(['read']);
    expect(result.expiresAt).toBeGreaterThan(Date.now() / 1000);
    expect(seen).toEqual([
      expect.objectContaining({ resource: API, scopes: ['read'], subject: 'alice', clientId: 'mcp-server' }),
    ]);
  });

  it('exchanges for several resources in parallel', async () => {
    let concurrent = 0;
    let maxConcurrent = 0;
    as.setTokenExchangeHandler(async ({ resource }) => {
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await new Promise((resolve) => setTimeout(resolve, 100));
      concurrent--;
      return { accessToken: `token-for-${resource}`, expiresIn: 600 };
    });
    const tool = newGrant()([API, CALENDAR]).withArgs(async (args: { q: string }, _ctx, access) => ({
      q: args.q,
      api: access.access(API).accessToken,
      calendar: access.access(CALENDAR).accessToken,
      successful: access.getSuccessfulResources(),
    }));
    expect(await tool({ q: 'x' }, ctxFor(userToken, 'bob'))).toEqual({
      q: 'x',
      api: `token-for-${API}`,
      calendar: `token-for-${CALENDAR}`,
      successful: [API, CALENDAR],
    });
    expect(maxConcurrent).toBe(2);
  });

  it('records a partial failure without throwing into the tool', async () => {
    as.setTokenExchangeHandler(
      ({ resource }): TokenExchangeOutcome =>
        resource === BROKEN ? { error: 'invalid_target', errorDescription: 'unknown resource' } : {},
    );
    const ctx = ctxFor(userToken, 'carol');
    const tool = newGrant()([API, BROKEN])(async (c, access) => {
      expect(getAccessContext(c)).toBe(access);
      return access;
    });
    const access = await tool(ctx);
    expect(access.getStatus()).toBe('partial_error');
    expect(access.hasErrors()).toBe(true);
    expect(access.hasError()).toBe(false);
    expect(access.hasResourceError(BROKEN)).toBe(true);
    expect(access.hasResourceError(API)).toBe(false);
    expect(access.getResourceError(BROKEN)).toEqual({
      error: 'invalid_target',
      message: 'invalid_target: unknown resource',
      status: 400,
    });
    expect(access.getErrors()).toEqual({ resources: { [BROKEN]: access.getResourceError(BROKEN) } });
    expect(access.getSuccessfulResources()).toEqual([API]);
    expect(access.getFailedResources()).toEqual([BROKEN]);
    expect(() => access.access(BROKEN)).toThrow(ResourceAccessError);
    expect(access.access(API).accessToken).toMatch(/^ey/);
  });

  it('reports status error when the AS is down', async () => {
    // Down after the server discovered it: the token endpoint answers 503.
    const grant = newGrant();
    const tool = grant([API, CALENDAR], { scopes: ['down'] })(async (_c, a) => a);
    expect((await tool(ctxFor(userToken, 'dave'))).getStatus()).toBe('success');
    as.setUnavailable(true);
    const access = await tool(ctxFor(userToken, 'dave2'));
    expect(access.getStatus()).toBe('error');
    expect(access.getFailedResources()).toEqual([API, CALENDAR]);
    expect(access.getResourceError(API)?.status).toBe(503);

    // Down before discovery: recorded as temporarily unavailable.
    const fresh = await newGrant()(API)(async (_c, a) => a)(ctxFor(userToken, 'dave3'));
    expect(fresh.getResourceError(API)?.error).toBe('temporarily_unavailable');

    // Nothing listening at all: a network error, still recorded.
    const nowhere = await listen(toNodeListener(async () => new Response('')));
    const url = nowhere.url;
    await nowhere.close();
    const offline = createGrant({ tokenEndpoint: `${url}/token`, credentials: { clientId: 'x', clientSecret: 'y' } });
    const access2 = await offline(API)(async (_c, a) => a)(ctxFor(userToken));
    expect(access2.getStatus()).toBe('error');
    expect(access2.getResourceError(API)?.error).toBe('network_error');
  });

  it('reuses an exchanged token within its lifetime: the second call makes no AS request', async () => {
    const grant = newGrant();
    const tool = grant([API, CALENDAR], { scopes: ['cache'] })(async (_c, access) => access.access(API).accessToken);
    const before = as.requests['/token'] ?? 0;
    const first = await tool(ctxFor(userToken, 'erin'));
    expect(as.requests['/token']).toBe(before + 2);
    const second = await tool(ctxFor(userToken, 'erin'));
    expect(second).toBe(first);
    expect(as.requests['/token']).toBe(before + 2);
    // Another subject, or other scopes, is another cache entry.
    await tool(ctxFor(userToken, 'frank'));
    expect(as.requests['/token']).toBe(before + 4);
    // The same subject with another token is another entry too: that token may be one the AS refuses.
    const otherToken = await as.mintToken({
      subject: 'erin',
      scopes: ['mcp:tools'],
      audience: 'http://127.0.0.1:1/mcp',
    });
    await tool(ctxFor(otherToken, 'erin'));
    expect(as.requests['/token']).toBe(before + 6);
  });

  it('does not reuse a token that has expired', async () => {
    as.setTokenExchangeHandler(() => ({ expiresIn: 0 }));
    const tool = newGrant()(API, { scopes: ['short'] })(async () => 'ok');
    const before = as.requests['/token'] ?? 0;
    await tool(ctxFor(userToken, 'gina'));
    await tool(ctxFor(userToken, 'gina'));
    expect(as.requests['/token']).toBe(before + 2);
  });

  it('records a global error when the tool runs without a verified user', async () => {
    const access = await newGrant()(API)(async (_c, a) => a)({} as ServerContext);
    expect(access.hasError()).toBe(true);
    expect(access.getStatus()).toBe('error');
    expect(access.getError()?.error).toBe('invalid_token');
    expect(() => access.access(API)).toThrow(/without a verified user token/);
  });

  it('authenticates with client_secret_post and private_key_jwt; wrong secrets are recorded as invalid_client', async () => {
    as.registerClient({ clientId: 'post-client', clientSecret: SECRET });
    const post = await newGrant({ clientId: 'post-client', clientSecret: SECRET, method: 'client_secret_post' })(API)(
      async (_c, a) => a,
    )(ctxFor(userToken, 'h'));
    expect(post.getStatus()).toBe('success');

    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    as.registerClient({ clientId: 'jwt-client', publicKey: { ...(await exportJWK(publicKey)), alg: 'ES256' } });
    const jwk = { ...(await exportJWK(privateKey)), alg: 'ES256', kid: 'k1' };
    const viaJwt = await newGrant({ clientId: 'jwt-client', privateKey: jwk })(API)(async (_c, a) => a)(
      ctxFor(userToken, 'i'),
    );
    expect(viaJwt.getStatus()).toBe('success');

    const wrong = await newGrant({ clientId: 'mcp-server', clientSecret: 'wrong' })(API)(async (_c, a) => a)(
      ctxFor(userToken, 'j'),
    );
    expect(wrong.getResourceError(API)).toMatchObject({ error: 'invalid_client', status: 401 });
  });

  it('shares one exchange between concurrent calls', async () => {
    const exchanger = new TokenExchangeClient({
      tokenEndpoint: as.tokenEndpoint,
      credentials: { clientId: 'mcp-server', clientSecret: SECRET },
    });
    const before = as.requests['/token'] ?? 0;
    const results = await Promise.all(
      [1, 2, 3].map(() => exchanger.exchange({ subjectToken: userToken, subject: 'k', resource: API })),
    );
    expect(new Set(results.map((r) => r.accessToken)).size).toBe(1);
    expect(as.requests['/token']).toBe(before + 1);
  });

  it('rejects bad grant() input with clear errors', () => {
    const grant = newGrant();
    expect(() => grant([])).toThrow(/at least one resource/);
    expect(() => grant('http://api.example.com')).toThrow(/https/);
    expect(() => createGrant({ credentials: { clientId: 'a', clientSecret: 'b' } })).toThrow(/tokenEndpoint or issuer/);
  });
});

describe('mockAccessContext()', () => {
  const grant = createGrant({
    tokenEndpoint: 'http://127.0.0.1:1/token',
    credentials: { clientId: 'a', clientSecret: 'b' },
  });
  const tool = grant([API, CALENDAR])(async (_ctx, access) => access);

  it('gives every resource the default token', async () => {
    using _mock = mockAccessContext();
    const access = await tool({} as ServerContext);
    expect(access.access(API).accessToken).toBe('test_access_token');
    expect(access.getStatus()).toBe('success');
  });

  it('gives a custom token, or tokens per resource', async () => {
    const mock = mockAccessContext({ accessToken: 'my_custom_token_123' });
    expect((await tool({} as ServerContext)).access(CALENDAR).accessToken).toBe('my_custom_token_123');
    mock.restore();
    using _m = mockAccessContext({ resourceTokens: { [API]: 'api_token_123' } });
    const access = await tool({} as ServerContext);
    expect(access.access(API).accessToken).toBe('api_token_123');
    expect(access.getStatus()).toBe('partial_error');
  });

  it('simulates errors', async () => {
    using mock = mockAccessContext({ error: 'Token exchange failed' });
    const access = await tool({} as ServerContext);
    expect(access.hasErrors()).toBe(true);
    expect(JSON.stringify(access.getErrors())).toContain('Token exchange failed');
    expect(mock.contextFor([API]).getStatus()).toBe('error');
  });

  it('is off after restore: a real exchange is attempted', async () => {
    const access = await tool({} as ServerContext);
    expect(access.getError()?.error).toBe('invalid_token');
  });

  it('works through a whole MCP server and the SDK client', async () => {
    const as = await startTestAuthorizationServer();
    let target: Parameters<typeof listen>[0] = () => {};
    const server = await listen((req, res) => target(req, res));
    try {
      const url = `${server.url}/mcp`;
      const mcp = whoamiMcp((s) => {
        s.registerTool(
          'sync_data',
          { description: 'Uses two APIs' },
          grant([API, CALENDAR])(async (_ctx, access) => ({
            content: [
              {
                type: 'text',
                text: `API: ${access.access(API).accessToken}, Calendar: ${access.access(CALENDAR).accessToken}`,
              },
            ],
          })),
        );
      });
      target = toNodeListener(
        protect(mcp, {
          resource: url,
          authorizationServers: [as.issuer],
          verifier: jwtVerifier({ issuer: as.issuer }),
        }),
      );
      using _mock = mockAccessContext({ resourceTokens: { [API]: 'api_token_123', [CALENDAR]: 'calendar_token_456' } });
      const result = await callTool(url, await as.mintToken({ audience: url }), 'sync_data');
      expect(result.content[0]?.text).toBe('API: api_token_123, Calendar: calendar_token_456');
    } finally {
      await server.close();
      await as.close();
    }
  });

  it('AccessContext can be built directly', () => {
    const access = new AccessContext({ tokens: [{ resource: `${API}/`, accessToken: 't', tokenType: 'Bearer' }] });
    expect(access.access(API).accessToken).toBe('t'); // canonical comparison
  });
});

describe('createAuthProvider() with grant() inside a protected MCP server', () => {
  let as: TestAuthorizationServer;
  let server: RunningServer;

  beforeAll(async () => {
    as = await startTestAuthorizationServer({ clients: [{ clientId: 'mcp-server', clientSecret: SECRET }] });
  });
  afterAll(async () => {
    await server?.close();
    await as?.close();
  });

  it('discovers the AS, verifies callers and exchanges their tokens in tools', async () => {
    let target: Parameters<typeof listen>[0] = () => {};
    server = await listen((req, res) => target(req, res));
    const mcpUrl = `${server.url}/mcp`;
    const auth = await createAuthProvider({
      issuer: as.issuer,
      resource: mcpUrl,
      serverName: 'Delegating server',
      clientCredentials: { clientId: 'mcp-server', clientSecret: SECRET },
      requiredScopes: ['mcp:tools'],
    });
    expect(auth.metadata).toMatchObject({
      resource: mcpUrl,
      authorization_servers: [as.issuer],
      resource_name: 'Delegating server',
    });
    expect(auth.authorizationServerMetadata.token_endpoint).toBe(as.tokenEndpoint);

    const mcp = whoamiMcp((s) => {
      s.registerTool(
        'calendar',
        { description: 'Uses the calendar API on the caller’s behalf' },
        auth.grant(CALENDAR, { scopes: ['calendar:read'] })(async (_ctx, access) => ({
          content: [{ type: 'text', text: access.hasErrors() ? 'error' : access.access(CALENDAR).accessToken }],
        })),
      );
    });
    target = toNodeListener(auth.protect(mcp));
    const userToken = await as.mintToken({ subject: 'zoe', scopes: ['mcp:tools'], audience: mcpUrl });
    const result = await callTool(mcpUrl, userToken, 'calendar');
    const exchanged = result.content[0]?.text ?? '';
    const claims = JSON.parse(Buffer.from(exchanged.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: 'zoe', aud: CALENDAR, scope: 'calendar:read', act: { sub: 'mcp-server' } });
  });
});
