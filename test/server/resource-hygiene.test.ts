import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBearerChallenge } from '../../src/oauth/www-authenticate.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import {
  startTestAuthorizationServer,
  type TestAuthorizationServer,
} from '../../src/testing/test-authorization-server.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type Slot, startSlot, userTokens } from '../helpers/serve-stack.js';
import { callTool, rpc, whoamiMcp } from './helpers.js';

// Every discovery URL seed 003's Cursor log shows a client probing (besides POST /mcp).
const CURSOR_DISCOVERY_PATHS = [
  '/mcp/.well-known/oauth-protected-resource',
  '/.well-known/oauth-authorization-server/mcp',
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration/mcp',
  '/mcp/.well-known/openid-configuration',
];

describe('jwtVerifier requires typ at+jwt (RFC 9068 §2.1)', () => {
  let as: ServeProcess;
  let ours: Slot; // protect() with the default jwtVerifier, against `gatehouse serve`
  let testAs: TestAuthorizationServer;
  let strict: Slot; // default verifier, against a test AS that can mint without typ
  let lenient: Slot; // requireAccessTokenType: false

  beforeAll(async () => {
    [ours, strict, lenient] = await Promise.all([startSlot(), startSlot(), startSlot()]);
    [as, testAs] = await Promise.all([
      startServeProcess(['--resource', `${ours.mcpUrl}=mcp:tools`]),
      startTestAuthorizationServer(),
    ]);
    ours.set(
      protect(whoamiMcp(), {
        resource: ours.mcpUrl,
        authorizationServers: [as.url],
        verifier: jwtVerifier({ issuer: as.url }),
        requiredScopes: ['mcp:tools'],
      }),
    );
    for (const [slot, requireAccessTokenType] of [
      [strict, true],
      [lenient, false],
    ] as const) {
      slot.set(
        protect(whoamiMcp(), {
          resource: slot.mcpUrl,
          authorizationServers: [testAs.issuer],
          verifier: jwtVerifier({ issuer: testAs.issuer, requireAccessTokenType }),
        }),
      );
    }
  }, 60_000);
  afterAll(async () => {
    await Promise.all([as?.close(), testAs?.close(), ...[ours, strict, lenient].map((s) => s?.close())]);
  });

  it('gatehouse serve issues typ at+jwt, and its tokens pass the default verifier', async () => {
    const user = await userTokens(as.url, ours.mcpUrl, 'mcp:tools');
    expect(user.status).toBe(200);
    const accessToken = user.body['access_token']!;
    expect(decodeProtectedHeader(accessToken).typ?.toLowerCase()).toMatch(/^(application\/)?at\+jwt$/);
    const result = await callTool(ours.mcpUrl, accessToken, 'whoami');
    expect(result.structuredContent).toMatchObject({ subject: 'admin', resource: ours.mcpUrl });
  }, 60_000);

  it.each([
    ['without typ', null],
    ['with typ JWT', 'JWT'],
  ])('refuses a token %s with 401 invalid_token saying why', async (_name, typ) => {
    const token = await testAs.mintToken({ audience: strict.mcpUrl, typ });
    const response = await rpc(strict.mcpUrl, 'tools/list', {}, token);
    expect(response.status).toBe(401);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['error']).toBe('invalid_token');
    expect(challenge?.params['error_description']).toContain('typ must be at+jwt');
  });

  it('accepts application/AT+JWT (case-insensitive, media-type form)', async () => {
    const token = await testAs.mintToken({ audience: strict.mcpUrl, typ: 'application/AT+JWT', subject: 'carol' });
    const result = await callTool(strict.mcpUrl, token, 'whoami');
    expect(result.structuredContent).toMatchObject({ subject: 'carol' });
  });

  it('accepts a token without typ when requireAccessTokenType is false', async () => {
    const token = await testAs.mintToken({ audience: lenient.mcpUrl, typ: null, subject: 'bob' });
    expect(decodeProtectedHeader(token).typ).toBeUndefined();
    const result = await callTool(lenient.mcpUrl, token, 'whoami');
    expect(result.structuredContent).toMatchObject({ subject: 'bob' });
  });
});

describe('protect() paths: 404 outside its own, and the legacy discovery mirror', () => {
  let as: TestAuthorizationServer;
  let mirrored: Slot;
  let plain: Slot;

  beforeAll(async () => {
    [as, mirrored, plain] = await Promise.all([startTestAuthorizationServer(), startSlot(), startSlot()]);
    for (const [slot, authorizationServerMetadata] of [
      [mirrored, true],
      [plain, false],
    ] as const) {
      slot.set(
        protect(whoamiMcp(), {
          resource: slot.mcpUrl,
          authorizationServers: [as.issuer],
          verifier: jwtVerifier({ issuer: as.issuer }),
          authorizationServerMetadata,
        }),
      );
    }
  });
  afterAll(async () => {
    await Promise.all([as?.close(), mirrored?.close(), plain?.close()]);
  });

  it.each(['/', '/favicon.ico', '/mcpx', '/other/mcp', '/.well-known/unknown'])(
    'answers 404 with a JSON body for %s, with or without a token',
    async (path) => {
      const token = await as.mintToken({ audience: plain.mcpUrl });
      for (const authorization of [undefined, `Bearer ${token}`]) {
        const response = await fetch(`${plain.url}${path}`, { headers: authorization ? { authorization } : {} });
        expect(response.status).toBe(404);
        expect(response.headers.get('www-authenticate')).toBeNull();
        expect(await response.json()).toMatchObject({ error: 'not_found' });
      }
    },
  );

  it('still challenges with 401 on the MCP endpoint and serves its metadata', async () => {
    expect((await rpc(plain.mcpUrl, 'tools/list', {})).status).toBe(401);
    expect((await fetch(`${plain.url}/.well-known/oauth-protected-resource/mcp`)).status).toBe(200);
  });

  it.each(CURSOR_DISCOVERY_PATHS)('the mirror answers %s with the right JSON document', async (path) => {
    const response = await fetch(`${mirrored.url}${path}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('application/json');
    const document = (await response.json()) as Record<string, unknown>;
    if (path.includes('oauth-protected-resource')) {
      expect(document).toMatchObject({ resource: mirrored.mcpUrl, authorization_servers: [as.issuer] });
    } else {
      expect(document).toMatchObject({ issuer: as.issuer, token_endpoint: as.tokenEndpoint });
    }
  });

  it.each(CURSOR_DISCOVERY_PATHS.filter((path) => !path.startsWith('/.well-known/oauth-authorization-server')))(
    'without the mirror, %s answers 404',
    async (path) => {
      expect((await fetch(`${plain.url}${path}`)).status).toBe(404);
    },
  );
});
