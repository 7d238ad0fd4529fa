import { getRequestListener } from '@hono/node-server';
import express from 'express';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBearerChallenge } from '../../src/oauth/www-authenticate.js';
import { expressHandler } from '../../src/server/express.js';
import { honoMiddleware } from '../../src/server/hono.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { type ProtectOptions, protect } from '../../src/server/protect.js';
import {
  startTestAuthorizationServer,
  type TestAuthorizationServer,
} from '../../src/testing/test-authorization-server.js';
import { callTool, rpc, whoamiMcp } from './helpers.js';

function deferred() {
  let target: Parameters<typeof listen>[0] | undefined;
  return {
    listener: ((req, res) => target?.(req, res)) as Parameters<typeof listen>[0],
    set: (next: Parameters<typeof listen>[0]) => {
      target = next;
    },
  };
}

describe('protect() with jwtVerifier against the test authorization server', () => {
  let as: TestAuthorizationServer;
  let server: RunningServer;
  let mcpUrl: string;
  let origin: string;

  beforeAll(async () => {
    as = await startTestAuthorizationServer();
    const slot = deferred();
    server = await listen(slot.listener);
    origin = server.url;
    mcpUrl = `${server.url}/mcp`;
    const options: ProtectOptions = {
      resource: `${mcpUrl}/`, // normalised: the trailing slash goes
      authorizationServers: [as.issuer],
      verifier: jwtVerifier({ issuer: as.issuer, jwksCooldown: 0 }), // jwks_uri discovered, audience from protect()
      requiredScopes: ['mcp:tools'],
      toolScopes: { admin_task: ['admin:write', 'admin:read'] },
      scopeHierarchy: { admin: ['admin:write', 'admin:read'] },
      resourceName: 'Test server',
      authorizationServerMetadata: true,
    };
    slot.set(toNodeListener(protect(whoamiMcp(), options)));
  });
  afterAll(async () => {
    await server?.close();
    await as?.close();
  });

  const token = (overrides: Partial<Parameters<TestAuthorizationServer['mintToken']>[0]> = {}) =>
    as.mintToken({ subject: 'alice', scopes: ['mcp:tools'], audience: mcpUrl, ...overrides });

  it('answers 401 with resource_metadata and the required scope when there is no token', async () => {
    const response = await rpc(mcpUrl, 'tools/list', {});
    expect(response.status).toBe(401);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['resource_metadata']).toBe(`${origin}/.well-known/oauth-protected-resource/mcp`);
    expect(challenge?.params['scope']).toBe('mcp:tools');
    expect(challenge?.params['error']).toBeUndefined();
    expect(await response.json()).toMatchObject({ error: 'invalid_token' });
  });

  it('runs the tool with the verified identity in authInfo (SDK client)', async () => {
    const result = await callTool(mcpUrl, await token(), 'whoami');
    expect(result.structuredContent).toEqual({
      subject: 'alice',
      scopes: ['mcp:tools'],
      clientId: 'test-client',
      resource: mcpUrl,
      resourceMetadataUrl: `${origin}/.well-known/oauth-protected-resource/mcp`,
    });
  });

  it.each([
    ['a token for another audience', { audience: 'http://127.0.0.1:9/other' }, 'audience mismatch'],
    ['an expired token', { expiresIn: -3600 }, 'expired'],
    ['a token signed with an untrusted key', { untrustedKey: true }, 'key'],
    ['a token from another issuer', { issuer: 'http://127.0.0.1:9' }, 'issuer mismatch'],
  ])('rejects %s with 401 invalid_token', async (_name, overrides, description) => {
    const response = await rpc(mcpUrl, 'tools/list', {}, await token(overrides));
    expect(response.status).toBe(401);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['error']).toBe('invalid_token');
    expect(challenge?.params['error_description']).toContain(description);
    expect(challenge?.params['resource_metadata']).toContain('/.well-known/oauth-protected-resource/mcp');
  });

  it('names the expected and the received audience', async () => {
    const response = await rpc(mcpUrl, 'tools/list', {}, await token({ audience: 'http://127.0.0.1:9/other' }));
    const description = findBearerChallenge(response.headers.get('www-authenticate'))?.params['error_description'];
    expect(description).toBe(`audience mismatch: expected ${mcpUrl}, received http://127.0.0.1:9/other`);
  });

  it('rejects a malformed Authorization header and a garbage token', async () => {
    const basic = await fetch(mcpUrl, { method: 'POST', headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expect(basic.status).toBe(401);
    const garbage = await rpc(mcpUrl, 'tools/list', {}, 'not-a-jwt');
    expect(garbage.status).toBe(401);
    expect(findBearerChallenge(garbage.headers.get('www-authenticate'))?.params['error_description']).toContain(
      'malformed',
    );
  });

  it('answers 403 insufficient_scope without the server-wide scope', async () => {
    const response = await rpc(mcpUrl, 'tools/list', {}, await token({ scopes: ['other'] }));
    expect(response.status).toBe(403);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['error']).toBe('insufficient_scope');
    expect(challenge?.params['scope']).toBe('mcp:tools');
  });

  it('answers 403 naming every scope a tool call needs in one challenge', async () => {
    const response = await rpc(
      mcpUrl,
      'tools/call',
      { name: 'admin_task', arguments: {} },
      await token({ scopes: ['mcp:tools', 'admin:read'] }),
    );
    expect(response.status).toBe(403);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['error']).toBe('insufficient_scope');
    expect(challenge?.params['scope']?.split(' ').sort()).toEqual(['admin:read', 'admin:write', 'mcp:tools']);
    expect(challenge?.params['resource_metadata']).toContain('/.well-known/oauth-protected-resource/mcp');
  });

  it('lets the tool run with its scopes, directly or through the hierarchy', async () => {
    const direct = await callTool(
      mcpUrl,
      await token({ scopes: ['mcp:tools', 'admin:read', 'admin:write'] }),
      'admin_task',
    );
    expect(direct.isError).toBeFalsy();
    const implied = await callTool(mcpUrl, await token({ scopes: ['mcp:tools', 'admin'] }), 'admin_task');
    expect((implied.structuredContent as { scopes: string[] }).scopes).toEqual(['mcp:tools', 'admin']);
    // Other tools need only the server-wide scope; arguments still reach the tool after the body was read.
    const echo = await callTool(mcpUrl, await token(), 'echo', { text: 'hello' });
    expect(echo.content[0]?.text).toBe('hello');
  });

  it('serves RFC 9728 metadata at the path form and the root, with CORS', async () => {
    for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const response = await fetch(`${origin}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('access-control-allow-origin')).toBe('*');
      expect(await response.json()).toEqual({
        resource: mcpUrl,
        authorization_servers: [as.issuer],
        scopes_supported: ['mcp:tools', 'admin:write', 'admin:read'],
        bearer_methods_supported: ['header'],
        resource_name: 'Test server',
        dpop_signing_alg_values_supported: ['ES256', 'RS256', 'PS256', 'EdDSA'],
      });
    }
    const preflight = await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`, {
      method: 'OPTIONS',
      headers: { origin: 'https://inspector.example', 'access-control-request-method': 'GET' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('mcp-protocol-version');
  });

  it('mirrors the authorization server metadata for older clients', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/oauth-authorization-server/mcp']) {
      const response = await fetch(`${origin}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('access-control-allow-origin')).toBe('*');
      expect(await response.json()).toMatchObject({ issuer: as.issuer, token_endpoint: as.tokenEndpoint });
    }
  });

  it('jwtVerifier reuses a verified result for the same token, unless cacheTtl is 0', async () => {
    const t = await token();
    const cached = jwtVerifier({ issuer: as.issuer, jwksUri: as.jwksUri });
    expect(await cached.verify(t, { resource: mcpUrl })).toBe(await cached.verify(t, { resource: mcpUrl }));
    const uncached = jwtVerifier({ issuer: as.issuer, jwksUri: as.jwksUri, cacheTtl: 0 });
    expect(await uncached.verify(t, { resource: mcpUrl })).not.toBe(await uncached.verify(t, { resource: mcpUrl }));
    // The cache is per audience: the same token is still refused for another resource.
    await expect(cached.verify(t, { resource: 'http://127.0.0.1:9/other' })).rejects.toThrow(/audience mismatch/);
  });

  it('follows a key rotation', async () => {
    expect((await rpc(mcpUrl, 'tools/list', {}, await token())).status).toBe(200);
    await as.rotateKeys();
    const jwksBefore = as.requests['/jwks'] ?? 0;
    expect((await rpc(mcpUrl, 'tools/list', {}, await token())).status).toBe(200);
    expect(as.requests['/jwks']).toBe(jwksBefore + 1);
  });
});

describe('protect() when things go wrong on the server side', () => {
  it('answers 503, not 401, when the issuer keys cannot be fetched; 413 for an oversized body', async () => {
    const as = await startTestAuthorizationServer();
    let target: Parameters<typeof listen>[0] = () => {};
    const server = await listen((req, res) => target(req, res));
    try {
      const url = `${server.url}/mcp`;
      target = toNodeListener(
        protect(whoamiMcp(), {
          resource: url,
          authorizationServers: [as.issuer],
          verifier: jwtVerifier({ issuer: as.issuer }),
          toolScopes: { admin_task: ['admin'] },
        }),
      );
      const token = await as.mintToken({ audience: url });
      as.setUnavailable(true);
      const down = await rpc(url, 'tools/list', {}, token);
      expect(down.status).toBe(503);
      expect(down.headers.get('www-authenticate')).toBeNull();
      expect(await down.json()).toMatchObject({ error: 'temporarily_unavailable' });
      as.setUnavailable(false);
      expect((await rpc(url, 'tools/list', {}, token)).status).toBe(200);
      const huge = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: 'x'.repeat(5 * 1024 * 1024),
      });
      expect(huge.status).toBe(413);
    } finally {
      await server.close();
      await as.close();
    }
  });
});

describe('protect() with a custom verifier', () => {
  it('still refuses a token whose reported resource is another one', async () => {
    let target: Parameters<typeof listen>[0] = () => {};
    const server = await listen((req, res) => target(req, res));
    try {
      const url = `${server.url}/mcp`;
      target = toNodeListener(
        protect(whoamiMcp(), {
          resource: url,
          authorizationServers: ['http://127.0.0.1:9'],
          verifier: {
            verify: async (token) => ({
              token,
              clientId: 'c',
              scopes: [],
              resource: new URL(token === 'mine' ? `${url}/` : 'http://127.0.0.1:9/other'),
            }),
          },
        }),
      );
      expect((await rpc(url, 'tools/list', {}, 'mine')).status).toBe(200);
      const other = await rpc(url, 'tools/list', {}, 'theirs');
      expect(other.status).toBe(401);
      expect(other.headers.get('www-authenticate')).toContain('received http://127.0.0.1:9/other');
    } finally {
      await server.close();
    }
  });
});

describe('protect() configuration errors', () => {
  const verifier = { verify: async () => ({ token: 't', clientId: 'c', scopes: [] }) };
  it('refuses a non-loopback http resource, a missing issuer list and a missing verifier', () => {
    const mcp = whoamiMcp();
    expect(() =>
      protect(mcp, { resource: 'http://mcp.example.com/mcp', authorizationServers: ['https://a.example'], verifier }),
    ).toThrow(/https/);
    expect(() => protect(mcp, { resource: 'https://mcp.example.com/mcp', authorizationServers: [], verifier })).toThrow(
      /authorizationServers/,
    );
    expect(() =>
      protect(mcp, {
        resource: 'https://mcp.example.com/mcp',
        authorizationServers: ['https://a.example'],
        verifier: undefined as never,
      }),
    ).toThrow(/verifier/);
  });

  it('refuses HMAC algorithms in jwtVerifier', () => {
    expect(() => jwtVerifier({ issuer: 'https://a.example', algorithms: ['HS256'] })).toThrow(/HS256/);
  });
});

describe('framework adapters', () => {
  let as: TestAuthorizationServer;
  beforeAll(async () => {
    as = await startTestAuthorizationServer();
  });
  afterAll(() => as?.close());

  async function exercise(url: string, other: string) {
    const origin = new URL(url).origin;
    const unauthenticated = await rpc(url, 'tools/list', {});
    expect(unauthenticated.status).toBe(401);
    const metadata = await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`);
    expect(metadata.status).toBe(200);
    const token = await as.mintToken({ subject: 'bob', scopes: ['mcp:tools'], audience: url });
    const result = await callTool(url, token, 'whoami');
    expect((result.structuredContent as { subject: string }).subject).toBe('bob');
    // Routes the protected handler does not own fall through to the framework.
    expect(await (await fetch(`${origin}${other}`)).text()).toBe('public');
  }

  it('Express: works before express.json() and after it', async () => {
    for (const withJson of [false, true]) {
      const app = express();
      const slot = deferred();
      const server = await listen(slot.listener);
      try {
        const url = `${server.url}/mcp`;
        if (withJson) app.use(express.json());
        app.use(
          expressHandler(
            protect(whoamiMcp(), {
              resource: url,
              authorizationServers: [as.issuer],
              verifier: jwtVerifier({ issuer: as.issuer }),
              requiredScopes: ['mcp:tools'],
              toolScopes: { admin_task: ['admin'] },
            }),
          ),
        );
        app.get('/health', (_req, res) => {
          res.send('public');
        });
        slot.set(app);
        await exercise(url, '/health');
      } finally {
        await server.close();
      }
    }
  });

  it('Hono', async () => {
    const app = new Hono();
    const slot = deferred();
    const server = await listen(slot.listener);
    try {
      const url = `${server.url}/mcp`;
      app.use(
        honoMiddleware(
          protect(whoamiMcp(), {
            resource: url,
            authorizationServers: [as.issuer],
            verifier: jwtVerifier({ issuer: as.issuer }),
            requiredScopes: ['mcp:tools'],
          }),
        ),
      );
      app.get('/health', (c) => c.text('public'));
      slot.set(getRequestListener(app.fetch) as never);
      await exercise(url, '/health');
    } finally {
      await server.close();
    }
  });
});
