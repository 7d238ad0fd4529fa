import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  githubUpstream,
  oidcUpstream,
  type UpstreamError,
  type UpstreamProvider,
} from '../../src/authorization-server/upstream/index.js';
import { type GithubDouble, startGithubDouble } from './github-double.js';
import { CALLBACK, clock, engine, upstreamLogin } from './helpers.js';
import { type OidcDouble, startOidcDouble } from './oidc-double.js';

const CLIENT = { clientId: 'gatehouse', clientSecret: 'a-long-enough-upstream-client-secret' };

async function errorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toMatchObject({ name: 'UpstreamError' });
  return error as UpstreamError;
}

describe('generic OIDC upstream against a second oidc-provider', () => {
  const time = clock();
  let idp: OidcDouble;
  let corp: () => UpstreamProvider;

  beforeAll(async () => {
    idp = await startOidcDouble({
      ...CLIENT,
      redirectUri: CALLBACK,
      emailDomain: 'example.com',
      extraClients: [{ clientId: 'another-app', clientSecret: 'another-app-secret-of-enough-length' }],
    });
    corp = () =>
      oidcUpstream({
        name: 'corp',
        displayName: 'Corp SSO',
        issuer: idp.url,
        ...CLIENT,
        scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
      });
  });
  afterAll(() => idp.close());

  it('signs in with discovery, PKCE, state and nonce, validates the ID token, and reads userinfo', async () => {
    const { identity, logs } = engine({
      providers: [corp()],
      resources: [{ resource: `${idp.url}/me`, upstream: 'corp' }],
      now: time.now,
    });
    const { authorizationUrl } = await identity.beginUpstreamLogin({ provider: 'corp', interactionUid: 'o-1' });
    const params = new URL(authorizationUrl).searchParams;
    expect(params.get('code_challenge_method')).toBe('S256');
    expect(params.get('nonce')).toBeTruthy();
    expect(params.get('prompt')).toBe('consent'); // offline_access needs it (OIDC Core §11)

    const callback = await upstreamLogin(identity, 'corp', 'o-1', { username: 'alice', password: 'x' });
    expect(callback.searchParams.get('iss')).toBe(idp.url);
    const account = await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'o-1' });
    expect(account.claims).toMatchObject({
      email: 'alice@example.com',
      email_verified: true,
      name: 'User alice',
      preferred_username: 'alice',
    });
    const user = await identity.findAccount(account.subject);
    expect(user?.user.identities).toMatchObject([{ upstream: 'corp', upstreamSubject: 'alice' }]);

    // The delegated token works at the upstream's userinfo endpoint.
    const answer = await identity.exchangeForUpstreamResource({ subject: account.subject, resource: `${idp.url}/me` });
    const me = await fetch(`${idp.url}/me`, { headers: { authorization: `Bearer ${answer.access_token}` } });
    expect(((await me.json()) as { sub: string }).sub).toBe('alice');
    expect(logs.text()).not.toContain(answer.access_token);
  });

  it('refreshes an expired upstream token with the refresh token', async () => {
    const { identity } = engine({
      providers: [corp()],
      resources: [{ resource: `${idp.url}/me`, upstream: 'corp' }],
      now: time.now,
    });
    const callback = await upstreamLogin(identity, 'corp', 'o-2', { username: 'bob', password: 'x' });
    const { subject } = await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'o-2' });
    const first = await identity.getUpstreamAccessToken(subject, 'corp');
    time.advance(3600);
    const second = await identity.exchangeForUpstreamResource({ subject, resource: `${idp.url}/me` });
    expect(second.access_token).not.toBe(first.access_token);
    const me = await fetch(`${idp.url}/me`, { headers: { authorization: `Bearer ${second.access_token}` } });
    expect(me.status).toBe(200);
    time.advance(-3600);
  });

  it('refuses an ID token minted for another login (nonce mismatch)', async () => {
    // Capture the ID token of one login, then inject it into the token response of another one.
    let captured: string | undefined;
    let inject = false;
    const intercept: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!String(input).endsWith('/token')) return response;
      const body = (await response.json()) as Record<string, unknown>;
      if (!inject) captured = body['id_token'] as string;
      else body['id_token'] = captured;
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
    };
    const { identity } = engine({ providers: [corp()], fetch: intercept, now: time.now });
    await identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(identity, 'corp', 'o-3', { username: 'carol', password: 'x' }),
      interactionUid: 'o-3',
    });
    expect(captured).toBeTruthy();
    inject = true;
    const error = await errorOf(
      identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'corp', 'o-4', { username: 'carol', password: 'x' }),
        interactionUid: 'o-4',
      }),
    );
    expect(error).toMatchObject({ error: 'access_denied', reason: 'nonce_mismatch' });
  });

  it('refuses an ID token for another audience or with a bad signature', async () => {
    const tamper: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!String(input).endsWith('/token')) return response;
      const body = (await response.json()) as Record<string, string>;
      const [h, p, s] = body['id_token']!.split('.');
      const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
      payload['email'] = 'admin@example.com';
      body['id_token'] = [h, Buffer.from(JSON.stringify(payload)).toString('base64url'), s].join('.');
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
    };
    const { identity } = engine({ providers: [corp()], fetch: tamper, now: time.now });
    const error = await errorOf(
      identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'corp', 'o-5', { username: 'dave', password: 'x' }),
        interactionUid: 'o-5',
      }),
    );
    expect(error).toMatchObject({ error: 'access_denied', reason: 'id_token_invalid' });

    // An ID token the same IdP issued to another app (valid signature) is refused for its audience.
    let foreign: string | undefined;
    const capture: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!String(input).endsWith('/token')) return response;
      const body = (await response.json()) as Record<string, string>;
      foreign = body['id_token'];
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
    };
    const another = engine({
      providers: [
        oidcUpstream({
          name: 'corp',
          issuer: idp.url,
          clientId: 'another-app',
          clientSecret: 'another-app-secret-of-enough-length',
        }),
      ],
      fetch: capture,
      now: time.now,
    });
    await another.identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(another.identity, 'corp', 'o-6', { username: 'dave', password: 'x' }),
      interactionUid: 'o-6',
    });
    const inject: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!String(input).endsWith('/token')) return response;
      const body = (await response.json()) as Record<string, string>;
      body['id_token'] = foreign!;
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
    };
    const victim = engine({ providers: [corp()], fetch: inject, now: time.now });
    const audience = await errorOf(
      victim.identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(victim.identity, 'corp', 'o-6b', { username: 'dave', password: 'x' }),
        interactionUid: 'o-6b',
      }),
    );
    expect(audience).toMatchObject({ error: 'access_denied', reason: 'id_token_invalid' });
    expect(audience.description).toContain('aud');
  });

  it('applies required-claim admission rules', async () => {
    const { identity } = engine({
      providers: [
        oidcUpstream({
          name: 'corp',
          issuer: idp.url,
          ...CLIENT,
          scopes: ['openid', 'email', 'groups'],
          admission: { requiredClaims: { groups: 'admins' } },
        }),
      ],
      now: time.now,
    });
    const admitted = await identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(identity, 'corp', 'o-7', { username: 'admin-erin', password: 'x' }),
      interactionUid: 'o-7',
    });
    expect(admitted.claims['email']).toBe('admin-erin@example.com');
    const refused = await errorOf(
      identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'corp', 'o-8', { username: 'frank', password: 'x' }),
        interactionUid: 'o-8',
      }),
    );
    expect(refused).toMatchObject({ error: 'access_denied', reason: 'admission_denied' });
    expect(refused.userMessage).toContain('"groups"');
  });

  describe('account linking across upstreams', () => {
    let gh: GithubDouble;
    beforeAll(async () => {
      gh = await startGithubDouble({
        clientId: 'gh',
        clientSecret: 'gh-secret',
        users: [
          {
            id: 7,
            login: 'grace',
            password: 'pw',
            emails: [{ email: 'grace@example.com', primary: true, verified: true }],
          },
        ],
      });
    });
    afterAll(() => gh.close());
    const providers = () => [
      corp(),
      githubUpstream({ clientId: 'gh', clientSecret: 'gh-secret', baseUrl: gh.url, apiBaseUrl: gh.apiUrl }),
    ];

    it('keeps one account per upstream identity by default (no linking by email)', async () => {
      const { identity } = engine({ providers: providers(), now: time.now });
      const viaCorp = await identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'corp', 'l-1', { username: 'grace', password: 'x' }),
        interactionUid: 'l-1',
      });
      const viaGithub = await identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'github', 'l-2', { username: 'grace', password: 'pw' }),
        interactionUid: 'l-2',
      });
      expect(viaCorp.claims['email']).toBe(viaGithub.claims['email']);
      expect(viaGithub.subject).not.toBe(viaCorp.subject);
      expect(viaGithub.linked).toBe(false);
    });

    it('links by verified email when turned on, and by an explicit linkTo', async () => {
      const { identity } = engine({ providers: providers(), linkByVerifiedEmail: true, now: time.now });
      const viaCorp = await identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'corp', 'l-3', { username: 'grace', password: 'x' }),
        interactionUid: 'l-3',
      });
      const viaGithub = await identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'github', 'l-4', { username: 'grace', password: 'pw' }),
        interactionUid: 'l-4',
      });
      expect(viaGithub.subject).toBe(viaCorp.subject);
      expect(viaGithub.linked).toBe(true);
      const user = await identity.findAccount(viaCorp.subject);
      expect(user?.user.identities.map((i) => i.upstream).sort()).toEqual(['corp', 'github']);
      // Both upstream tokens are kept for the one user.
      expect((await identity.getUpstreamAccessToken(viaCorp.subject, 'github')).access_token).toMatch(/^gho_/);
      expect((await identity.getUpstreamAccessToken(viaCorp.subject, 'corp')).access_token).toBeTruthy();
      await identity.unlink(viaCorp.subject, 'github');
      await expect(identity.getUpstreamAccessToken(viaCorp.subject, 'github')).rejects.toMatchObject({
        reason: 'not_linked',
      });

      const other = engine({ providers: providers(), now: time.now });
      const local = await other.identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(
          other.identity,
          'github',
          'l-5',
          { username: 'grace', password: 'pw' },
          {
            linkTo: 'local-user-1',
          },
        ),
        interactionUid: 'l-5',
      });
      expect(local).toMatchObject({ subject: 'local-user-1', linked: true });
    });

    it('does not link an unverified email even when linking is on', async () => {
      const { identity } = engine({ providers: providers(), linkByVerifiedEmail: true, now: time.now });
      const a = await identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'corp', 'l-6', { username: 'unverified-h', password: 'x' }),
        interactionUid: 'l-6',
      });
      const b = await identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'corp', 'l-7', { username: 'unverified-h2', password: 'x' }),
        interactionUid: 'l-7',
      });
      expect(a.claims['email_verified']).toBe(false);
      expect(a.subject).not.toBe(b.subject);
    });
  });
});
