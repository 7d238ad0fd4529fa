import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBearerChallenge } from '../../src/oauth/www-authenticate.js';
import { InvalidTokenError } from '../../src/server/errors.js';
import { introspectionVerifier } from '../../src/server/introspection-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import { expandScopes, missingScopes, requireScopes } from '../../src/server/scopes.js';
import {
  startTestAuthorizationServer,
  type TestAuthorizationServer,
} from '../../src/testing/test-authorization-server.js';
import { rpc, whoamiMcp } from './helpers.js';

const RESOURCE = 'http://127.0.0.1:7/mcp';
const b64 = (scopes: string) => Buffer.from(scopes).toString('base64url');

describe('introspectionVerifier against the test authorization server', () => {
  let as: TestAuthorizationServer;
  beforeAll(async () => {
    as = await startTestAuthorizationServer({ clients: [{ clientId: 'rs', clientSecret: 'rs-secret' }] });
  });
  afterAll(() => as?.close());

  const verifier = (cacheTtl: number) =>
    introspectionVerifier({
      endpoint: as.introspectionEndpoint,
      clientId: 'rs',
      clientSecret: 'rs-secret',
      cacheTtl,
      issuer: as.issuer,
    });

  it('accepts an active token and maps its claims', async () => {
    const token = await as.mintToken({ subject: 'ann', scopes: ['a', 'b'], audience: RESOURCE, clientId: 'app' });
    const authInfo = await verifier(0).verify(token, { resource: RESOURCE });
    expect(authInfo).toMatchObject({ token, clientId: 'app', scopes: ['a', 'b'], extra: { subject: 'ann' } });
    expect(authInfo.resource?.href).toBe(RESOURCE);
  });

  it('rejects inactive, revoked and foreign-audience tokens with InvalidTokenError', async () => {
    const v = verifier(0);
    await expect(v.verify('nonsense', { resource: RESOURCE })).rejects.toBeInstanceOf(InvalidTokenError);
    const token = await as.mintToken({ audience: RESOURCE });
    await v.verify(token, { resource: RESOURCE });
    as.revoke(token);
    await expect(v.verify(token, { resource: RESOURCE })).rejects.toThrow(/not active/);
    const other = await as.mintToken({ audience: 'http://127.0.0.1:7/other' });
    await expect(v.verify(other, { resource: RESOURCE })).rejects.toThrow(
      `audience mismatch: expected ${RESOURCE}, received http://127.0.0.1:7/other`,
    );
  });

  it('caches active answers for cacheTtl', async () => {
    const v = verifier(60);
    const token = await as.mintToken({ audience: RESOURCE });
    const before = as.requests['/introspect'] ?? 0;
    await v.verify(token, { resource: RESOURCE });
    await v.verify(token, { resource: RESOURCE });
    expect(as.requests['/introspect']).toBe(before + 1);
  });

  it('answers 503 when the AS is down, through protect()', async () => {
    let target: Parameters<typeof listen>[0] = () => {};
    const server: RunningServer = await listen((req, res) => target(req, res));
    try {
      const url = `${server.url}/mcp`;
      target = toNodeListener(
        protect(whoamiMcp(), {
          resource: url,
          authorizationServers: [as.issuer],
          verifier: verifier(0),
        }),
      );
      const token = await as.mintToken({ audience: url });
      expect((await rpc(url, 'tools/list', {}, token)).status).toBe(200);
      as.setUnavailable(true);
      const response = await rpc(url, 'tools/list', {}, token);
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ error: 'temporarily_unavailable' });
    } finally {
      as.setUnavailable(false);
      await server.close();
    }
  });

  it('needs credentials', () => {
    expect(() => introspectionVerifier({ endpoint: as.introspectionEndpoint })).toThrow(/clientId and clientSecret/);
    expect(() =>
      introspectionVerifier({ endpoint: 'http://as.example.com/introspect', clientId: 'a', clientSecret: 'b' }),
    ).toThrow(/https/);
  });
});

describe('scope hierarchy and the SDK scopeChallenge', () => {
  it('expands transitively and tolerates cycles', () => {
    const hierarchy = { admin: ['write'], write: ['read'], read: ['admin'] };
    expect([...expandScopes(['write'], hierarchy)].sort()).toEqual(['admin', 'read', 'write']);
    expect(missingScopes(['read'], ['read', 'write'])).toEqual(['write']);
    expect(missingScopes(['admin'], ['read'], { admin: ['write'], write: ['read'] })).toEqual([]);
  });

  it('requireScopes() challenges for every scope the operation needs, through the SDK', async () => {
    let target: Parameters<typeof listen>[0] = () => {};
    const server = await listen((req, res) => target(req, res));
    const as = await startTestAuthorizationServer();
    try {
      const url = `${server.url}/mcp`;
      const mcp = whoamiMcp((s) => {
        s.registerTool(
          'deploy',
          {
            description: 'Deploys',
            scopeChallenge: requireScopes(['deploy'], {
              alsoRequired: ['mcp:tools'],
              hierarchy: { admin: ['deploy'] },
            }),
          },
          async () => ({ content: [{ type: 'text', text: 'deployed' }] }),
        );
      });
      target = toNodeListener(
        protect(mcp, {
          resource: url,
          authorizationServers: [as.issuer],
          verifier: {
            verify: async (token, context) => ({
              token,
              clientId: 'c',
              scopes: Buffer.from(token, 'base64url').toString().split(' '),
              resource: new URL(context!.resource),
            }),
          },
        }),
      );
      const denied = await rpc(url, 'tools/call', { name: 'deploy', arguments: {} }, b64('mcp:tools'));
      expect(denied.status).toBe(403);
      const challenge = findBearerChallenge(denied.headers.get('www-authenticate'));
      expect(challenge?.params['scope']).toBe('mcp:tools deploy');
      expect(challenge?.params['resource_metadata']).toBe(`${server.url}/.well-known/oauth-protected-resource/mcp`);
      const allowed = await rpc(url, 'tools/call', { name: 'deploy', arguments: {} }, b64('mcp:tools admin'));
      expect(allowed.status).toBe(200);
    } finally {
      await server.close();
      await as.close();
    }
  });
});
