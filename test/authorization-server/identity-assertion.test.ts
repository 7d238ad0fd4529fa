import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { MachineAuth } from '../../src/client/machine.js';
import { ID_JAG_JWT_TYPE, ID_JAG_TOKEN_TYPE, JWT_BEARER_GRANT_TYPE } from '../../src/oauth/jwt-bearer.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type Slot, serveWhoami, startSlot } from '../helpers/serve-stack.js';

// Enterprise-managed authorization (SEP-990) against `gatehouse serve`: an organisation's IdP issues an identity
// assertion authorization grant (ID-JAG) for the user's agent, and Gatehouse turns it into an audience-bound token.

const AGENT = {
  client_id: 'acme-agent',
  client_secret: 'acme-agent-secret-0123456789abcdef',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: [JWT_BEARER_GRANT_TYPE],
  redirect_uris: [],
  response_types: [],
};
/** Confidential, allowed the grant, but not one of the IdP's clients. */
const OTHER = { ...AGENT, client_id: 'other-agent', client_secret: 'other-agent-secret-0123456789abcdef' };
const OTHER_RESOURCE = 'http://127.0.0.1:1/reports';

type Keys = Awaited<ReturnType<typeof generateKeyPair>>;

/**
 * A minimal enterprise IdP on loopback: publishes its JWKS and answers RFC 8693 token exchange (an ID token for an
 * ID-JAG), as Okta or Entra would for enterprise-managed authorization.
 */
async function startIdp(keys: Keys): Promise<{ url: string; close(): Promise<void> }> {
  const jwk = { ...(await exportJWK(keys.publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
  let url = '';
  const server: Server = createServer(async (req, res) => {
    if (req.url === '/jwks')
      return void res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: [jwk] }));
    if (req.url !== '/token' || req.method !== 'POST') return void res.writeHead(404).end();
    let body = '';
    for await (const chunk of req) body += chunk;
    const form = new URLSearchParams(body);
    if (form.get('requested_token_type') !== ID_JAG_TOKEN_TYPE || form.get('client_id') !== 'agent-at-idp') {
      return void res.writeHead(400).end(JSON.stringify({ error: 'invalid_request' }));
    }
    const { sub } = decodeJwt(form.get('subject_token')!);
    const grant = await signGrant(keys, {
      iss: url,
      sub,
      aud: form.get('audience')!,
      client_id: AGENT.client_id,
      resource: form.get('resource')!,
      ...(form.get('scope') ? { scope: form.get('scope')! } : {}),
    });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ access_token: grant, issued_token_type: ID_JAG_TOKEN_TYPE, token_type: 'N_A' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function signGrant(
  keys: Keys,
  claims: JWTPayload,
  options: { typ?: string; lifetime?: number; iat?: number; kid?: string } = {},
): Promise<string> {
  const iat = options.iat ?? Math.floor(Date.now() / 1000);
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: options.typ ?? ID_JAG_JWT_TYPE, kid: options.kid ?? 'idp-1' })
    .setIssuedAt(iat)
    .setExpirationTime(iat + (options.lifetime ?? 300))
    .sign(keys.privateKey);
}

describe('enterprise-managed authorization: ID-JAG at gatehouse serve', () => {
  let idpKeys: Keys;
  let idp: Awaited<ReturnType<typeof startIdp>>;
  let as: ServeProcess;
  let mcp: Slot;

  beforeAll(async () => {
    idpKeys = await generateKeyPair('ES256');
    idp = await startIdp(idpKeys);
    mcp = await startSlot();
    as = await startServeProcess(
      ['--resource', `${mcp.mcpUrl}=mcp:tools,mcp:admin`, '--resource', `${OTHER_RESOURCE}=reports:read`],
      {
        clients: [AGENT, OTHER],
        enterpriseIdps: [
          {
            issuer: idp.url,
            jwksUri: `${idp.url}/jwks`,
            name: 'acme',
            clients: [AGENT.client_id],
            resources: [mcp.mcpUrl],
          },
        ],
      },
    );
    serveWhoami(mcp, as.url);
  }, 60_000);

  afterAll(async () => {
    await as?.close();
    await mcp?.close();
    await idp?.close();
  });

  /** A token request with the jwt-bearer grant, authenticated as `client`. */
  async function redeem(assertion: string, client = AGENT, extra: Record<string, string> = {}) {
    const response = await fetch(`${as.url}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: JWT_BEARER_GRANT_TYPE, assertion, ...extra }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, string> };
  }

  const grant = (claims: JWTPayload = {}, options?: Parameters<typeof signGrant>[2]) =>
    signGrant(
      idpKeys,
      { iss: idp.url, sub: 'alice', aud: as.url, client_id: AGENT.client_id, resource: mcp.mcpUrl, ...claims },
      options,
    );

  it('advertises the jwt-bearer grant in its metadata', async () => {
    const metadata = (await (await fetch(`${as.url}/.well-known/oauth-authorization-server`)).json()) as {
      grant_types_supported: string[];
    };
    expect(metadata.grant_types_supported).toContain(JWT_BEARER_GRANT_TYPE);
  });

  it("the Gatehouse client's enterprise flow (IdP token exchange, then jwt-bearer) calls a protected server", async () => {
    const idToken = await new SignJWT({ email: 'alice@acme.example' })
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject('alice')
      .setIssuer(idp.url)
      .setAudience('agent-at-idp')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(idpKeys.privateKey);
    const auth = new MachineAuth({
      mcpUrl: mcp.mcpUrl,
      clientId: AGENT.client_id,
      clientSecret: AGENT.client_secret,
      scopes: 'mcp:tools',
      idJag: { tokenEndpoint: `${idp.url}/token`, idToken, clientId: 'agent-at-idp' },
    });
    const client = new Client(mcp.mcpUrl, { auth });
    try {
      const result = await client.callTool('whoami', {});
      // The IdP's subject, namespaced so it can never be a local user; the token is for this server only.
      expect(result.structuredContent).toMatchObject({
        subject: 'acme:alice',
        clientId: AGENT.client_id,
        scopes: ['mcp:tools'],
        resource: mcp.mcpUrl,
      });
    } finally {
      await client.close();
    }
  }, 60_000);

  it('issues an audience-bound access token and no refresh token', async () => {
    const { status, body } = await redeem(await grant({ scope: 'mcp:tools' }));
    expect(status).toBe(200);
    expect(body.refresh_token).toBeUndefined();
    const claims = decodeJwt(body.access_token!);
    expect(claims).toMatchObject({
      aud: mcp.mcpUrl,
      sub: 'acme:alice',
      client_id: AGENT.client_id,
      scope: 'mcp:tools',
    });
  });

  it('uses each grant once, whatever the timing (jti replay)', async () => {
    const assertion = await grant();
    const answers = await Promise.all([redeem(assertion), redeem(assertion), redeem(assertion)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 400, 400]);
    const refused = answers.filter((a) => a.status === 400);
    for (const a of refused)
      expect(a.body).toMatchObject({
        error: 'invalid_grant',
        error_description: expect.stringMatching(/already used/),
      });
  });

  it.each([
    ['another typ', () => grant({}, { typ: 'JWT' }), 'invalid_grant', /typ oauth-id-jag\+jwt/],
    ['an issuer not trusted', () => grant({ iss: 'https://evil.example' }), 'invalid_grant', /does not trust/],
    ['another audience', () => grant({ aud: 'https://other-as.example' }), 'invalid_grant', /aud/],
    [
      'an expired grant',
      () => grant({}, { iat: Math.floor(Date.now() / 1000) - 400, lifetime: 300 }),
      'invalid_grant',
      /expired/,
    ],
    ['a grant living too long', () => grant({}, { lifetime: 3600 }), 'invalid_grant', /longer than 600/],
    ['another client_id', () => grant({ client_id: 'someone-else' }), 'invalid_grant', /another client/],
    [
      'no jti',
      async () => {
        const now = Math.floor(Date.now() / 1000);
        return new SignJWT({ sub: 'alice', client_id: AGENT.client_id, resource: mcp.mcpUrl })
          .setProtectedHeader({ alg: 'ES256', typ: ID_JAG_JWT_TYPE, kid: 'idp-1' })
          .setIssuer(idp.url)
          .setAudience(as.url)
          .setIssuedAt(now)
          .setExpirationTime(now + 60)
          .sign(idpKeys.privateKey);
      },
      'invalid_grant',
      /jti/,
    ],
    [
      'a forged signature',
      async () => {
        const attacker = await generateKeyPair('ES256');
        return signGrant(attacker, {
          iss: idp.url,
          sub: 'alice',
          aud: as.url,
          client_id: AGENT.client_id,
          resource: mcp.mcpUrl,
        });
      },
      'invalid_grant',
      /signature/,
    ],
    ['a resource the IdP may not grant', () => grant({ resource: OTHER_RESOURCE }), 'invalid_target', /may not grant/],
    [
      'an unknown resource',
      () => grant({ resource: 'http://127.0.0.1:1/nowhere' }),
      'invalid_target',
      /unknown resource/,
    ],
    [
      'scopes beyond the grant',
      () => grant({ scope: 'mcp:tools' }),
      'invalid_scope',
      /does not grant/,
      { scope: 'mcp:tools mcp:admin' },
    ],
    [
      'a request resource other than the grant',
      () => grant(),
      'invalid_target',
      /not the one/,
      { resource: OTHER_RESOURCE },
    ],
  ] as const)('refuses %s', async (_name, make, error, description, extra?: Record<string, string>) => {
    const { status, body } = await redeem(await make(), AGENT, extra ?? {});
    expect(status).toBe(400);
    expect(body.error).toBe(error);
    expect(body.error_description).toMatch(description);
  });

  it("refuses a client that is not one of the IdP's, even with a grant naming it", async () => {
    const { status, body } = await redeem(await grant({ client_id: OTHER.client_id }), OTHER);
    expect(status).toBe(400);
    expect(body.error).toBe('unauthorized_client');
  });

  it('refuses a client that does not authenticate', async () => {
    const response = await fetch(`${as.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: JWT_BEARER_GRANT_TYPE,
        assertion: await grant(),
        client_id: AGENT.client_id,
      }),
    });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: string }).error).toBe('invalid_client');
  });
});
