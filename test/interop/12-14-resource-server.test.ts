import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalResourceUri } from '../../src/oauth/resource-uri.js';
import { findBearerChallenge } from '../../src/oauth/www-authenticate.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import {
  startTestAuthorizationServer,
  type TestAuthorizationServer,
} from '../../src/testing/test-authorization-server.js';
import { callTool, rpc, whoamiMcp } from '../server/helpers.js';

let as: TestAuthorizationServer;
let server: RunningServer;
let bare: RunningServer;
let mcpUrl: string;
let origin: string;

beforeAll(async () => {
  as = await startTestAuthorizationServer();
  let target: Parameters<typeof listen>[0] | undefined;
  server = await listen((req, res) => target?.(req, res));
  origin = server.url;
  mcpUrl = `${origin}/mcp`;
  target = toNodeListener(
    protect(whoamiMcp(), {
      resource: `${mcpUrl}/`, // configured with a trailing slash: canonicalised once, in protect()
      authorizationServers: [as.issuer],
      verifier: jwtVerifier({ issuer: as.issuer, jwksCooldown: 0 }),
      requiredScopes: ['mcp:tools'],
      toolScopes: { admin_task: ['admin:write', 'admin:read'] },
      scopeHierarchy: { admin: ['admin:write', 'admin:read'] },
      authorizationServerMetadata: true,
    }),
  );
  // The peer as many servers ship today: a 401 on /mcp, and no discovery documents anywhere.
  bare = await listen((req, res) => {
    if (req.url?.startsWith('/mcp')) res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
    else res.writeHead(404).end();
  });
});
afterAll(async () => {
  await server?.close();
  await bare?.close();
  await as?.close();
});

const token = (overrides: Partial<Parameters<TestAuthorizationServer['mintToken']>[0]> = {}) =>
  as.mintToken({ subject: 'alice', scopes: ['mcp:tools'], audience: mcpUrl, ...overrides });

describe('note 12: discovery 404s', () => {
  it('note 12: provoked — a server without the documents fails discovery at the path form and the root', async () => {
    for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const response = await fetch(`${bare.url}${path}`);
      expect(response.status, path).toBe(404);
      await response.text();
    }
  });

  it('note 12: protect() serves the metadata at the path form and the root, and mirrors the AS metadata', async () => {
    for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const response = await fetch(`${origin}${path}`);
      expect(response.status, path).toBe(200);
      expect(await response.json()).toMatchObject({ resource: mcpUrl, authorization_servers: [as.issuer] });
    }
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/oauth-authorization-server/mcp']) {
      const response = await fetch(`${origin}${path}`);
      expect(response.status, path).toBe(200);
      expect(await response.json()).toMatchObject({ issuer: as.issuer });
    }
  });
});

describe('note 13: audience mistakes', () => {
  it('note 13: provoked — an audience differing only by a trailing slash fails a naive string comparison', () => {
    expect(`${mcpUrl}/` === mcpUrl).toBe(false);
    expect(canonicalResourceUri(`${mcpUrl}/`)).toBe(canonicalResourceUri(mcpUrl));
    expect(canonicalResourceUri(mcpUrl.replace('http://', 'HTTP://'))).toBe(mcpUrl);
  });

  it('note 13: canonical comparison accepts the slash variant; a wrong audience names expected and received', async () => {
    const slash = await callTool(mcpUrl, await token({ audience: `${mcpUrl}/` }), 'whoami');
    expect(slash.isError).toBeFalsy();
    const response = await rpc(mcpUrl, 'tools/list', {}, await token({ audience: origin })); // the `/mcp` suffix lost
    expect(response.status).toBe(401);
    const description = findBearerChallenge(response.headers.get('www-authenticate'))?.params['error_description'];
    expect(description).toBe(`audience mismatch: expected ${mcpUrl}, received ${origin}`);
  });
});

describe('note 14: scope challenges', () => {
  it('note 14: provoked — a token missing two of the tool’s scopes; one 403 names every scope needed', async () => {
    const response = await rpc(
      mcpUrl,
      'tools/call',
      { name: 'admin_task', arguments: {} },
      await token({ scopes: ['mcp:tools'] }),
    );
    expect(response.status).toBe(403);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['error']).toBe('insufficient_scope');
    // Not just the first missing one: a single step-up then covers the call.
    expect(challenge?.params['scope']?.split(' ').sort()).toEqual(['admin:read', 'admin:write', 'mcp:tools']);
  });

  it('note 14: the scope hierarchy is honoured where configured (admin implies admin:read and admin:write)', async () => {
    const implied = await callTool(mcpUrl, await token({ scopes: ['mcp:tools', 'admin'] }), 'admin_task');
    expect(implied.isError).toBeFalsy();
    const partial = await rpc(
      mcpUrl,
      'tools/call',
      { name: 'admin_task', arguments: {} },
      await token({ scopes: ['mcp:tools', 'admin:read'] }),
    );
    expect(partial.status).toBe(403);
    await partial.text();
  });
});
