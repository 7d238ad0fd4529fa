import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticUsers } from '../../src/authorization-server/index.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../../src/oauth/index.js';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { oidcAdapterFactory } from '../../src/storage/oidc/factory.js';
import { SERVE_USER } from '../helpers/serve-process.js';
import { serveFailure } from '../stores/services.js';
import {
  authorizationUrl,
  Browser,
  DOWNSTREAM,
  decodeJwt,
  loginFlow,
  pkce,
  RESOURCE,
  type RunningAs,
  register,
  type ServedAs,
  startAs,
  startServedAs,
  token,
  USER,
} from './helpers.js';

describe('refresh-token rotation', () => {
  let as: RunningAs;
  beforeAll(async () => {
    as = await startAs({ refreshTokenGraceSeconds: 60 });
  });
  afterAll(() => as.close());

  it('returns the same new pair when the just-rotated token is repeated within the grace window', async () => {
    const flow = await loginFlow(as);
    const old = flow.first.body['refresh_token']!;
    const first = await token(as, { grant_type: 'refresh_token', refresh_token: old, client_id: flow.clientId });
    expect(first.status).toBe(200);
    expect(first.body['refresh_token']).not.toBe(old);
    const repeat = await token(as, { grant_type: 'refresh_token', refresh_token: old, client_id: flow.clientId });
    expect(repeat.status).toBe(200);
    expect(repeat.body['refresh_token']).toBe(first.body['refresh_token']);
    expect(repeat.body['access_token']).toBe(first.body['access_token']);
    // The new token keeps working.
    const next = await token(as, {
      grant_type: 'refresh_token',
      refresh_token: first.body['refresh_token']!,
      client_id: flow.clientId,
    });
    expect(next.status).toBe(200);
  });

  it('does not hand the cached pair to another client', async () => {
    const flow = await loginFlow(as);
    const old = flow.first.body['refresh_token']!;
    await token(as, { grant_type: 'refresh_token', refresh_token: old, client_id: flow.clientId });
    const other = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const stolen = await token(as, {
      grant_type: 'refresh_token',
      refresh_token: old,
      client_id: String(other.body['client_id']),
    });
    expect(stolen.status).toBe(400);
    expect(stolen.body['access_token']).toBeUndefined();
  });
});

describe('refresh-token reuse across two instances sharing Redis', () => {
  const prefix = `gatehouse-test-${randomBytes(4).toString('hex')}:`;
  // Both instances hold the same at-rest key, as every instance sharing a store must.
  const encryptionKeys = [generateEncryptionKey()];
  const adapterA = oidcAdapterFactory({ backend: 'redis', url: 'redis://127.0.0.1:6379', prefix, encryptionKeys });
  const adapterB = oidcAdapterFactory({ backend: 'redis', url: 'redis://127.0.0.1:6379', prefix, encryptionKeys });
  let a: RunningAs;
  let b: RunningAs;
  beforeAll(async () => {
    await adapterA.ready();
    await adapterB.ready();
    // One issuer, two instances: the second takes the first's port number only in its issuer string.
    a = await startAs({ adapter: adapterA, refreshTokenGraceSeconds: 0 });
    b = await startAs({ adapter: adapterB, refreshTokenGraceSeconds: 0, issuer: a.url });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await adapterA.close();
    await adapterB.close();
  });

  it('shares keys, and revokes the grant when B sees a token A already rotated', async () => {
    const jwksA = await (await fetch(`${a.url}/jwks`)).json();
    const jwksB = await (await fetch(`${b.url}/jwks`)).json();
    expect(jwksB).toEqual(jwksA);

    const flow = await loginFlow(a);
    const old = flow.first.body['refresh_token']!;
    const rotated = await token(a, { grant_type: 'refresh_token', refresh_token: old, client_id: flow.clientId });
    expect(rotated.status).toBe(200);
    const reuse = await token(b, { grant_type: 'refresh_token', refresh_token: old, client_id: flow.clientId });
    expect(reuse.status).toBe(400);
    expect(reuse.body['error']).toBe('invalid_grant');
    // The whole grant is gone: the rotated token no longer works on either instance.
    const after = await token(a, {
      grant_type: 'refresh_token',
      refresh_token: rotated.body['refresh_token']!,
      client_id: flow.clientId,
    });
    expect(after.body['error']).toBe('invalid_grant');
  });

  it('repeats the same pair across instances within a grace window', async () => {
    const c = await startAs({ adapter: adapterA, refreshTokenGraceSeconds: 60, issuer: a.url });
    const d = await startAs({ adapter: adapterB, refreshTokenGraceSeconds: 60, issuer: a.url });
    try {
      const flow = await loginFlow(c);
      const old = flow.first.body['refresh_token']!;
      const first = await token(c, { grant_type: 'refresh_token', refresh_token: old, client_id: flow.clientId });
      const repeat = await token(d, { grant_type: 'refresh_token', refresh_token: old, client_id: flow.clientId });
      expect(repeat.status).toBe(200);
      expect(repeat.body['refresh_token']).toBe(first.body['refresh_token']);
    } finally {
      await c.close();
      await d.close();
    }
  });
});

describe('token exchange (RFC 8693)', () => {
  let as: RunningAs;
  const mcpServer = { id: 'mcp-server', secret: 'mcp-server-secret-long-enough-123' };
  const other = { id: 'other-server', secret: 'other-server-secret-long-enough-1' };
  beforeAll(async () => {
    const confidential = (c: { id: string; secret: string }) => ({
      client_id: c.id,
      client_secret: c.secret,
      grant_types: [TOKEN_EXCHANGE_GRANT_TYPE],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic' as const,
    });
    as = await startAs({
      clients: [confidential(mcpServer), confidential(other)],
      tokenExchange: [
        {
          clientId: 'mcp-server',
          from: [RESOURCE],
          to: [{ resource: DOWNSTREAM, scopes: ['api:read'], beyondConsent: true }],
        },
      ],
    });
  });
  afterAll(() => as.close());

  const exchange = (auth: { id: string; secret: string }, subjectToken: string, extra: Record<string, string> = {}) =>
    token(
      as,
      {
        grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
        subject_token: subjectToken,
        subject_token_type: TOKEN_TYPE.accessToken,
        resource: DOWNSTREAM,
        ...extra,
      },
      auth,
    );

  it('exchanges a user token for one bound to the downstream resource, recording the actor', async () => {
    const flow = await loginFlow(as);
    const result = await exchange(mcpServer, flow.first.body['access_token']!, { scope: 'api:read' });
    expect(result.status).toBe(200);
    expect(result.body['issued_token_type']).toBe(TOKEN_TYPE.accessToken);
    const claims = decodeJwt(result.body['access_token']!);
    expect(claims['aud']).toBe(DOWNSTREAM);
    expect(claims['sub']).toBe('alice');
    expect(claims['scope']).toBe('api:read');
    expect(claims['act']).toMatchObject({ sub: 'mcp-server' });
    expect(claims['iss']).toBe(as.url);
    expect(Number(claims['exp'])).toBeLessThanOrEqual(Number(decodeJwt(flow.first.body['access_token']!)['exp']));
  });

  it('refuses what the policy does not allow', async () => {
    const flow = await loginFlow(as);
    const userToken = flow.first.body['access_token']!;
    const badScope = await exchange(mcpServer, userToken, { scope: 'api:write' });
    expect(badScope.body['error']).toBe('invalid_scope');
    const badTarget = await exchange(mcpServer, userToken, { resource: RESOURCE });
    expect(badTarget.body['error']).toBe('invalid_target');
    const notAllowedClient = await exchange(other, userToken);
    expect(notAllowedClient.body['error']).toBe('unauthorized_client');
    const forged = await exchange(mcpServer, `${userToken.slice(0, -4)}AAAA`);
    expect(forged.body['error']).toBe('invalid_grant');
    const publicClient = await token(as, {
      grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
      subject_token: userToken,
      subject_token_type: TOKEN_TYPE.accessToken,
      resource: DOWNSTREAM,
      client_id: flow.clientId,
    });
    expect(publicClient.status).toBeGreaterThanOrEqual(400);
    expect(publicClient.status).toBeLessThan(500);
  });

  it('refuses a subject token issued for a resource the client does not serve', async () => {
    const flow = await loginFlow(as);
    const downstreamToken = (await exchange(mcpServer, flow.first.body['access_token']!)).body['access_token']!;
    const chained = await exchange(mcpServer, downstreamToken);
    expect(chained.body['error']).toBe('invalid_grant');
  });
});

describe('token exchange: the subject account must still be enabled', () => {
  it('refuses to exchange the token of an account the authenticator no longer finds', async () => {
    const users = await staticUsers({ alice: 'wonderland' });
    let disabled = false;
    const as = await startAs({
      authenticator: {
        authenticate: (username, password) => users.authenticate(username, password),
        findAccount: async (subject) => (disabled ? undefined : { subject }),
      },
      clients: [
        {
          client_id: 'mcp-server',
          client_secret: 'mcp-server-secret-long-enough-123',
          grant_types: [TOKEN_EXCHANGE_GRANT_TYPE],
          redirect_uris: [],
          response_types: [],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
      tokenExchange: [
        {
          clientId: 'mcp-server',
          from: [RESOURCE],
          to: [{ resource: DOWNSTREAM, scopes: ['api:read'], beyondConsent: true }],
        },
      ],
    });
    try {
      const flow = await loginFlow(as);
      const exchange = () =>
        token(
          as,
          {
            grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
            subject_token: flow.first.body['access_token']!,
            subject_token_type: TOKEN_TYPE.accessToken,
            resource: DOWNSTREAM,
          },
          { id: 'mcp-server', secret: 'mcp-server-secret-long-enough-123' },
        );
      expect((await exchange()).status).toBe(200);
      disabled = true;
      const refused = await exchange();
      expect(refused.body).toMatchObject({ error: 'invalid_grant' }); // oidc-provider keeps the reason out of the answer
    } finally {
      await as.close();
    }
  });
});

describe('users, login and consent', () => {
  // `gatehouse serve --superuser admin --users FILE` with the login limit lowered in --config.
  let as: ServedAs;
  beforeAll(async () => {
    as = await startServedAs({ loginRateLimit: { attempts: 3, windowSeconds: 600 } });
  });
  afterAll(() => as.close());

  it('logs in users from the users file and the superuser', async () => {
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const clientId = String(reg.body['client_id']);
    const redirectUri = 'http://127.0.0.1:4711/callback';
    for (const credentials of [USER, SERVE_USER]) {
      const { callback } = await new Browser().authorize(
        authorizationUrl(as, { clientId, redirectUri, challenge: pkce().challenge }),
        redirectUri,
        { credentials },
      );
      expect(callback?.searchParams.get('code'), credentials.username).toBeTruthy();
    }
  });

  it('refuses a users file with clear passwords: exit 1 and a fix naming `gatehouse admin users hash`', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-users-'));
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ users: [{ username: 'eve', password: 'clear-text' }] }));
    const result = await serveFailure(['--store', 'memory', '--users', join(dir, 'bad.json')], {});
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('has the wrong shape');
    expect(result.stderr).toMatch(/^fix: .*gatehouse admin users hash.*clear passwords are refused/m);
  });

  it('remembers consent per client, across sessions', async () => {
    const redirectUri = 'https://app.example.com/callback';
    const reg = await register(as, { redirect_uris: [redirectUri], client_name: 'Remembered' });
    const clientId = String(reg.body['client_id']);
    const first = new Browser();
    await first.authorize(authorizationUrl(as, { clientId, redirectUri, challenge: pkce().challenge }), redirectUri, {
      credentials: USER,
    });
    expect(first.pages.map((p) => p.kind)).toEqual(['login', 'consent']);
    // Same browser: no pages at all.
    const again = await first.authorize(
      authorizationUrl(as, { clientId, redirectUri, challenge: pkce().challenge }),
      redirectUri,
    );
    expect(again.callback?.searchParams.get('code')).toBeTruthy();
    expect(first.pages).toHaveLength(2);
    // A new browser: login again, but no consent.
    const second = new Browser();
    const { callback } = await second.authorize(
      authorizationUrl(as, { clientId, redirectUri, challenge: pkce().challenge }),
      redirectUri,
      { credentials: USER },
    );
    expect(callback?.searchParams.get('code')).toBeTruthy();
    expect(second.pages.map((p) => p.kind)).toEqual(['login']);
    // A wider request asks again, for the new scope only.
    const wider = new Browser();
    await wider.authorize(
      authorizationUrl(as, {
        clientId,
        redirectUri,
        challenge: pkce().challenge,
        scope: 'mcp:tools mcp:admin offline_access',
      }),
      redirectUri,
      { credentials: USER },
    );
    const consent = wider.pages.find((p) => p.kind === 'consent');
    expect(consent?.html).toContain('mcp:admin');
    expect(consent?.html).not.toContain('<code>mcp:tools</code>');
  });

  it('asks native (loopback) clients every time, as RFC 8252 section 8.6 advises, saying it was approved before', async () => {
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const reg = await register(as, { redirect_uris: [redirectUri], client_name: 'Native' });
    const clientId = String(reg.body['client_id']);
    const browser = new Browser();
    for (let i = 0; i < 2; i++) {
      const { callback } = await browser.authorize(
        authorizationUrl(as, { clientId, redirectUri, challenge: pkce().challenge }),
        redirectUri,
        { credentials: USER },
      );
      expect(callback?.searchParams.get('code')).toBeTruthy();
    }
    expect(browser.pages.map((p) => p.kind)).toEqual(['login', 'consent', 'consent']);
    expect(browser.pages[2]?.html).toContain('approved');
  });

  it('denial redirects with access_denied', async () => {
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const { callback } = await new Browser().authorize(
      authorizationUrl(as, { clientId: String(reg.body['client_id']), redirectUri, challenge: pkce().challenge }),
      redirectUri,
      { credentials: USER, decision: 'deny' },
    );
    expect(callback?.searchParams.get('error')).toBe('access_denied');
  });

  it('rate-limits failed logins', async () => {
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { last } = await new Browser().authorize(
        authorizationUrl(as, { clientId: String(reg.body['client_id']), redirectUri, challenge: pkce().challenge }),
        redirectUri,
        { credentials: { username: SERVE_USER.username, password: `wrong-${i}` } },
      );
      statuses.push(last.status);
    }
    expect(statuses).toEqual([401, 401, 401, 429]);
    // Even the right password waits now.
    const { last } = await new Browser().authorize(
      authorizationUrl(as, { clientId: String(reg.body['client_id']), redirectUri, challenge: pkce().challenge }),
      redirectUri,
      { credentials: SERVE_USER },
    );
    expect(last.status).toBe(429);
  });
});

describe('registration with an initial access token', () => {
  let as: ServedAs;
  beforeAll(async () => {
    as = await startServedAs({ registration: { initialAccessToken: 'let-me-register-please' } });
  });
  afterAll(() => as.close());

  it('requires the token', async () => {
    const without = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] });
    expect(without.status).toBe(401);
    const withToken = await register(
      as,
      { redirect_uris: ['http://127.0.0.1:4711/callback'] },
      { authorization: 'Bearer let-me-register-please' },
    );
    expect(withToken.status).toBe(201);
  });
});
