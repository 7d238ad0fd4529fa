import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthProvider } from '../../src/server/auth-provider.js';
import { introspectionVerifier } from '../../src/server/introspection-verifier.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import {
  introspectAs,
  RESOURCE_SERVER_CLIENT,
  revokeAs,
  type Slot,
  startSlot,
  userTokens,
} from '../helpers/serve-stack.js';
import { callTool, rpc, whoamiMcp } from '../server/helpers.js';

// One `gatehouse serve` process, four resources configured with --resource as the docs say.
describe('token formats and algorithms per resource (gatehouse serve)', () => {
  let as: ServeProcess;
  let jwtServer: Slot; // default: JWT, RS256
  let opaqueServer: Slot; // format=opaque
  let es256Server: Slot; // alg=ES256
  let shortServer: Slot; // ttl=1

  const introspectingProvider = () =>
    createAuthProvider({
      issuer: as.url,
      resource: opaqueServer.mcpUrl,
      clientCredentials: {
        clientId: RESOURCE_SERVER_CLIENT.client_id,
        clientSecret: RESOURCE_SERVER_CLIENT.client_secret,
      },
      verification: 'introspection',
      requiredScopes: ['mcp:tools'],
    });

  beforeAll(async () => {
    [jwtServer, opaqueServer, es256Server, shortServer] = await Promise.all([
      startSlot(),
      startSlot(),
      startSlot(),
      startSlot(),
    ]);
    as = await startServeProcess(
      [
        '--resource',
        `${jwtServer.mcpUrl}=mcp:tools`,
        '--resource',
        `${opaqueServer.mcpUrl}=mcp:tools,format=opaque`,
        '--resource',
        `${es256Server.mcpUrl}=mcp:tools,alg=ES256`,
        '--resource',
        `${shortServer.mcpUrl}=mcp:tools,ttl=1`,
      ],
      { clients: [{ ...RESOURCE_SERVER_CLIENT }] },
    );
    const introspecting = () =>
      introspectionVerifier({
        endpoint: `${as.url}/token/introspection`,
        clientId: RESOURCE_SERVER_CLIENT.client_id,
        clientSecret: RESOURCE_SERVER_CLIENT.client_secret,
        issuer: as.url,
        cacheTtl: 0,
      });
    const options = (resource: string) => ({ resource, authorizationServers: [as.url], requiredScopes: ['mcp:tools'] });
    jwtServer.set(protect(whoamiMcp(), { ...options(jwtServer.mcpUrl), verifier: introspecting() }));
    es256Server.set(
      protect(whoamiMcp(), { ...options(es256Server.mcpUrl), verifier: jwtVerifier({ issuer: as.url }) }),
    );
    shortServer.set(protect(whoamiMcp(), { ...options(shortServer.mcpUrl), verifier: introspecting() }));
    opaqueServer.set((await introspectingProvider()).protect(whoamiMcp()));
  }, 60_000);

  afterAll(async () => {
    await as?.close();
    await Promise.all([jwtServer, opaqueServer, es256Server, shortServer].map((s) => s?.close()));
  });

  it('publishes an RS256 and an ES256 key, and signs with RS256 unless the resource says ES256', async () => {
    const jwks = (await (await fetch(`${as.url}/jwks`)).json()) as { keys: Array<{ alg?: string; kty: string }> };
    expect(jwks.keys.map((k) => k.alg).sort()).toEqual(['ES256', 'RS256']);
    expect(jwks.keys.every((k) => !('d' in k))).toBe(true);
    const rs = await userTokens(as.url, jwtServer.mcpUrl);
    const es = await userTokens(as.url, es256Server.mcpUrl);
    expect(decodeProtectedHeader(rs.body['access_token']!)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
    expect(decodeProtectedHeader(es.body['access_token']!)).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    // jwtVerifier (defaults) accepts both algorithms the issuer publishes.
    const both = jwtVerifier({ issuer: as.url });
    await expect(both.verify(rs.body['access_token']!, { resource: jwtServer.mcpUrl })).resolves.toMatchObject({
      scopes: ['mcp:tools'],
    });
    const result = await callTool(es256Server.mcpUrl, es.body['access_token']!, 'whoami');
    expect(result.structuredContent).toMatchObject({ subject: 'admin', scopes: ['mcp:tools'] });
  });

  it('introspects a JWT access token and its refresh token; revoking the JWT is seen by introspectionVerifier at once', async () => {
    const tokens = await userTokens(as.url, jwtServer.mcpUrl);
    const accessToken = tokens.body['access_token']!;
    const refreshToken = tokens.body['refresh_token']!;
    expect(accessToken.split('.')).toHaveLength(3);
    const claims = await introspectAs(as.url, accessToken);
    expect(claims).toMatchObject({
      active: true,
      sub: 'admin',
      aud: jwtServer.mcpUrl,
      scope: 'mcp:tools',
      client_id: tokens.clientId,
      iss: as.url,
      token_type: 'Bearer',
    });
    expect((await introspectAs(as.url, refreshToken)).active).toBe(true);
    expect((await callTool(jwtServer.mcpUrl, accessToken, 'whoami')).structuredContent).toMatchObject({
      subject: 'admin',
    });

    expect(await revokeAs(as.url, tokens.clientId, accessToken)).toBe(200);
    expect((await introspectAs(as.url, accessToken)).active).toBe(false);
    const refused = await rpc(jwtServer.mcpUrl, 'tools/list', {}, accessToken);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toContain('invalid_token');
    // As for opaque tokens, revoking an access token revokes the tokens of its grant, the refresh token included.
    expect((await introspectAs(as.url, refreshToken)).active).toBe(false);
  });

  it('revokes a refresh token, and the JWT access tokens of its grant with it', async () => {
    const tokens = await userTokens(as.url, jwtServer.mcpUrl);
    const accessToken = tokens.body['access_token']!;
    expect(await revokeAs(as.url, tokens.clientId, tokens.body['refresh_token']!)).toBe(200);
    expect((await introspectAs(as.url, tokens.body['refresh_token']!)).active).toBe(false);
    expect((await introspectAs(as.url, accessToken)).active).toBe(false);
    expect((await rpc(jwtServer.mcpUrl, 'tools/list', {}, accessToken)).status).toBe(401);
  });

  it('issues opaque tokens for format=opaque; createAuthProvider({ verification: "introspection" }) accepts them until revoked', async () => {
    const tokens = await userTokens(as.url, opaqueServer.mcpUrl);
    const accessToken = tokens.body['access_token']!;
    expect(accessToken).not.toContain('.');
    expect((await introspectAs(as.url, accessToken)).active).toBe(true);
    expect((await callTool(opaqueServer.mcpUrl, accessToken, 'whoami')).structuredContent).toMatchObject({
      subject: 'admin',
      scopes: ['mcp:tools'],
    });
    expect(await revokeAs(as.url, tokens.clientId, accessToken)).toBe(200);
    // createAuthProvider caches active answers (60 s by default): a fresh provider sees the revocation.
    const fresh = await introspectingProvider();
    await expect(fresh.verifier.verify(accessToken, { resource: opaqueServer.mcpUrl })).rejects.toMatchObject({
      error: 'invalid_token',
    });
  });

  it('answers active: false for an expired JWT, a JWT it did not sign, and the id of a JWT record', async () => {
    const tokens = await userTokens(as.url, shortServer.mcpUrl);
    const accessToken = tokens.body['access_token']!;
    expect(Number(tokens.body['expires_in'])).toBe(1);
    const { jti } = (await introspectAs(as.url, accessToken)) as { jti?: string; active: boolean };
    const [header, payload] = accessToken.split('.');
    expect((await introspectAs(as.url, `${header}.${payload}.AAAA`)).active).toBe(false);
    expect(
      (await introspectAs(as.url, `jwt:${JSON.parse(Buffer.from(payload!, 'base64url').toString()).jti}`)).active,
    ).toBe(false);
    expect(jti).toBeUndefined(); // the record id is not disclosed either
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect((await introspectAs(as.url, accessToken)).active).toBe(false);
    expect((await rpc(shortServer.mcpUrl, 'tools/list', {}, accessToken)).status).toBe(401);
  });
});
