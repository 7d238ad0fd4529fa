import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createUpstreamIdentity,
  githubUpstream,
  UpstreamError,
  upstreamAuthenticator,
} from '../../src/authorization-server/upstream/index.js';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { fileStore } from '../../src/storage/file.js';
import { type GithubDouble, startGithubDouble } from './github-double.js';
import { clock, engine, ISSUER, upstreamLogin } from './helpers.js';

const CLIENT = { clientId: 'gh-client', clientSecret: 'gh-secret' };
const OCTOCAT = {
  id: 583231,
  login: 'octocat',
  password: 'hunter2',
  name: 'The Octocat',
  email: null,
  emails: [{ email: 'octocat@example.com', primary: true, verified: true }],
};
const MONA = {
  id: 42,
  login: 'mona',
  password: 'lisa',
  email: 'mona@evil.test',
  emails: [{ email: 'mona@evil.test', primary: true, verified: false }],
};

async function errorOf(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

describe('GitHub preset against a GitHub-shaped OAuth 2.0 server', () => {
  const time = clock();
  let gh: GithubDouble;
  let setup: ReturnType<typeof engine>;
  const github = () =>
    githubUpstream({ ...CLIENT, baseUrl: gh.url, apiBaseUrl: gh.apiUrl, scopes: ['read:user', 'user:email'] });

  beforeAll(async () => {
    gh = await startGithubDouble({ ...CLIENT, users: [OCTOCAT, MONA], accessTokenTtl: 3600, now: time.now });
    setup = engine({
      providers: [github()],
      resources: [{ resource: gh.apiUrl, upstream: 'github', scopes: ['read:user'] }],
      now: time.now,
    });
  });
  afterAll(() => gh.close());

  it('signs in through the login form, reads the user from /user, and hands out the token for the API', async () => {
    const { identity, logs } = setup;
    const callback = await upstreamLogin(identity, 'github', 'uid-1');
    expect(callback.searchParams.get('code')).toBeTruthy();
    expect(await identity.resolveUpstreamCallback(callback)).toEqual({ interactionUid: 'uid-1', upstream: 'github' });

    const account = await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-1' });
    expect(account.subject).toMatch(/^u_/);
    expect(account.claims).toMatchObject({
      email: 'octocat@example.com',
      email_verified: true,
      preferred_username: 'octocat',
      name: 'The Octocat',
    });
    expect(account.created).toBe(true);
    // The token endpoint was asked for JSON.
    expect(gh.tokenRequests.at(-1)).toEqual({ accept: 'application/json', grantType: 'authorization_code' });

    const answer = await identity.exchangeForUpstreamResource({ subject: account.subject, resource: `${gh.apiUrl}/` });
    expect(answer).toMatchObject({
      token_type: 'Bearer',
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      scope: 'read:user user:email',
    });
    expect(answer.expires_in).toBeGreaterThan(3000);
    expect(answer.expires_in).toBeLessThanOrEqual(3600);
    const user = await fetch(`${gh.apiUrl}/user`, { headers: { authorization: `Bearer ${answer.access_token}` } });
    expect(((await user.json()) as { login: string }).login).toBe('octocat');

    // The same upstream user gets the same subject next time.
    const again = await identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(identity, 'github', 'uid-2'),
      interactionUid: 'uid-2',
    });
    expect(again.subject).toBe(account.subject);
    expect(again.created).toBe(false);

    // Nothing the login returns, and nothing logged, holds an upstream token.
    for (const token of gh.liveAccessTokens()) {
      expect(JSON.stringify(account)).not.toContain(token);
      expect(logs.text()).not.toContain(token);
    }
    expect(logs.text()).toContain('upstream login completed');
  });

  it('understands form-encoded token responses (no Accept: application/json)', async () => {
    const plain: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers);
      if (headers.get('accept') === 'application/json') headers.set('accept', '*/*');
      return fetch(input, { ...init, headers });
    };
    const { identity } = engine({ providers: [github()], fetch: plain, now: time.now });
    const callback = await upstreamLogin(identity, 'github', 'uid-form');
    const account = await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-form' });
    expect(gh.tokenRequests.at(-1)?.accept).toBe('*/*');
    const token = await identity.getUpstreamAccessToken(account.subject, 'github');
    expect(token.access_token).toMatch(/^gho_/);
    expect(token.scope).toEqual(['read:user', 'user:email']);
    expect(token.expires_at).toBeGreaterThan(time.now() / 1000);
  });

  it('stores upstream tokens and accounts as ciphertext only', async () => {
    const { identity, raw } = setup;
    const callback = await upstreamLogin(identity, 'github', 'uid-cipher');
    await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-cipher' });
    const entries = [...raw];
    expect(entries.some(([key]) => key.startsWith('upstream:tokens:'))).toBe(true);
    for (const [, entry] of entries) {
      const value = JSON.parse(entry.json) as unknown;
      expect(typeof value).toBe('string');
      expect(String(value).split('.')).toHaveLength(5); // JWE compact
    }
    const everything = entries.map(([, e]) => e.json).join('\n');
    for (const token of gh.liveAccessTokens()) expect(everything).not.toContain(token);
    expect(everything).not.toContain('gho_');
    expect(everything).not.toContain('ghr_');
    expect(everything).not.toContain('octocat@example.com');
  });

  it('refreshes an expired upstream token once, however many requests ask at the same time', async () => {
    const { identity } = setup;
    const callback = await upstreamLogin(identity, 'github', 'uid-refresh');
    const { subject } = await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-refresh' });
    const before = await identity.getUpstreamAccessToken(subject, 'github');
    time.advance(3600 + 60);
    const refreshesBefore = gh.tokenRequests.filter((r) => r.grantType === 'refresh_token').length;
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => identity.exchangeForUpstreamResource({ subject, resource: gh.apiUrl })),
    );
    const refreshes = gh.tokenRequests.filter((r) => r.grantType === 'refresh_token').length - refreshesBefore;
    expect(refreshes).toBe(1);
    expect(new Set(answers.map((a) => a.access_token)).size).toBe(1);
    expect(answers[0]!.access_token).not.toBe(before.access_token);
    const user = await fetch(`${gh.apiUrl}/user`, { headers: { authorization: `Bearer ${answers[0]!.access_token}` } });
    expect(user.status).toBe(200);
  });

  it('turns a revoked upstream grant into invalid_grant naming the link URL, never an exception of another kind', async () => {
    const { identity } = setup;
    const callback = await upstreamLogin(identity, 'github', 'uid-revoke');
    const { subject } = await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-revoke' });
    gh.revokeAll('octocat');
    time.advance(3600 + 60);
    const error = await errorOf(identity.exchangeForUpstreamResource({ subject, resource: gh.apiUrl }));
    expect(error.error).toBe('invalid_grant');
    expect(error.reason).toBe('revoked');
    expect(error.linkUrl).toBe(`${ISSUER}/upstream/github/link`);
    expect(error.description).toContain(error.linkUrl);
    expect(error.toJSON()).toEqual({ error: 'invalid_grant', error_description: error.description });
    // The dead tokens are gone: the next request says "not linked" without asking GitHub.
    const next = await errorOf(identity.getUpstreamAccessToken(subject, 'github'));
    expect(next.reason).toBe('not_linked');
    expect(next.linkUrl).toBe(`${ISSUER}/upstream/github/link`);
  });

  it('refuses a forged state, a callback bound to another interaction, and a replayed callback', async () => {
    const { identity } = setup;
    const callback = await upstreamLogin(identity, 'github', 'uid-forge');

    const forged = new URL(callback);
    forged.searchParams.set('state', 'forged-state');
    const e1 = await errorOf(identity.completeUpstreamLogin({ callbackUrl: forged, interactionUid: 'uid-forge' }));
    expect(e1.reason).toBe('state_mismatch');
    expect(e1.error).toBe('access_denied');
    await expect(identity.resolveUpstreamCallback(forged)).rejects.toMatchObject({ reason: 'login_expired' });

    // Another browser's interaction cannot finish this login (its pending record does not exist).
    const e2 = await errorOf(identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-other' }));
    expect(e2.reason).toBe('login_expired');

    // The real callback still works once, and only once.
    await identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-forge' });
    const e3 = await errorOf(identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-forge' }));
    expect(e3.reason).toBe('login_expired');
  });

  it('refuses a state from another interaction even when both are pending', async () => {
    const { identity } = setup;
    const a = await upstreamLogin(identity, 'github', 'uid-a');
    await identity.beginUpstreamLogin({ provider: 'github', interactionUid: 'uid-b' });
    const error = await errorOf(identity.completeUpstreamLogin({ callbackUrl: a, interactionUid: 'uid-b' }));
    expect(error.reason).toBe('state_mismatch');
  });

  it('expires a pending login', async () => {
    const { identity } = setup;
    const callback = await upstreamLogin(identity, 'github', 'uid-late');
    time.advance(601);
    const error = await errorOf(identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-late' }));
    expect(error.reason).toBe('login_expired');
  });

  it('reports an error from the upstream as access_denied with a page message', async () => {
    const { identity } = setup;
    const { authorizationUrl } = await identity.beginUpstreamLogin({ provider: 'github', interactionUid: 'uid-deny' });
    const state = new URL(authorizationUrl).searchParams.get('state')!;
    const callback = new URL(identity.callbackUrl);
    callback.searchParams.set('error', 'access_denied');
    callback.searchParams.set('error_description', 'The user has denied your application access.');
    callback.searchParams.set('state', state);
    const error = await errorOf(identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'uid-deny' }));
    expect(error).toMatchObject({ error: 'access_denied', reason: 'upstream_denied' });
    expect(error.userMessage).toBe('You declined the request at GitHub, so you are not signed in.');
  });

  it('applies admission rules: allowed email domains need a verified address', async () => {
    const { identity } = engine({
      providers: [github()],
      admission: { allowedEmailDomains: ['example.com'] },
      now: time.now,
    });
    const ok = await identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(identity, 'github', 'uid-adm-1'),
      interactionUid: 'uid-adm-1',
    });
    expect(ok.claims['email']).toBe('octocat@example.com');
    const refused = await errorOf(
      identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'github', 'uid-adm-2', { username: 'mona', password: 'lisa' }),
        interactionUid: 'uid-adm-2',
      }),
    );
    expect(refused).toMatchObject({ error: 'access_denied', reason: 'admission_denied' });
    expect(refused.userMessage).toContain('verified email');
    expect(await identity.accounts.list()).toHaveLength(1);
  });

  it('says invalid_target for a resource no upstream serves, and invalid_scope with a link for a missing scope', async () => {
    const { identity } = engine({
      providers: [github()],
      resources: [{ resource: gh.apiUrl, upstream: 'github', scopes: ['repo'] }],
      now: time.now,
    });
    const { subject } = await identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(identity, 'github', 'uid-scope'),
      interactionUid: 'uid-scope',
    });
    const target = await errorOf(identity.exchangeForUpstreamResource({ subject, resource: 'https://other.example' }));
    expect(target.error).toBe('invalid_target');
    const scope = await errorOf(identity.exchangeForUpstreamResource({ subject, resource: gh.apiUrl }));
    expect(scope.error).toBe('invalid_scope');
    expect(scope.linkUrl).toBe(`${ISSUER}/upstream/github/link?scope=repo`);
    expect(scope.description).toContain(scope.linkUrl);
    const notLinked = await errorOf(identity.exchangeForUpstreamResource({ subject: 'u_nobody', resource: gh.apiUrl }));
    expect(notLinked).toMatchObject({ error: 'invalid_grant', reason: 'not_linked' });
  });

  it('deletes every upstream token of a user whose grant was revoked, and unlinks accounts', async () => {
    const { identity } = setup;
    const { subject } = await identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(identity, 'github', 'uid-del'),
      interactionUid: 'uid-del',
    });
    await identity.getUpstreamAccessToken(subject, 'github');
    await identity.deleteForSubject(subject);
    expect((await errorOf(identity.getUpstreamAccessToken(subject, 'github'))).reason).toBe('not_linked');
    expect(await identity.findAccount(subject)).toBeDefined();
    const authenticator = upstreamAuthenticator(identity);
    expect(await authenticator.findAccount!(subject)).toMatchObject({
      subject,
      claims: { preferred_username: 'octocat' },
    });
    expect(await authenticator.authenticate('octocat', 'hunter2')).toBeUndefined();
    await identity.unlink(subject);
    expect(await identity.findAccount(subject)).toBeUndefined();
    expect((await identity.accounts.list()).map((u) => u.subject)).not.toContain(subject);
  });
});

describe('refresh across instances sharing a store', () => {
  it('spends a rotating refresh token once when two instances share a file store', async () => {
    const time = clock();
    const gh = await startGithubDouble({
      ...CLIENT,
      users: [OCTOCAT],
      autoApprove: 'octocat',
      accessTokenTtl: 3600,
      now: time.now,
    });
    const directory = await mkdtemp(join(tmpdir(), 'gatehouse-upstream-'));
    try {
      const key = generateEncryptionKey();
      const make = () =>
        createUpstreamIdentity({
          issuer: ISSUER,
          providers: [githubUpstream({ ...CLIENT, baseUrl: gh.url, apiBaseUrl: gh.apiUrl })],
          store: fileStore({ directory, durable: false }),
          encryption: { keys: [key] },
          now: time.now,
        });
      const a = make();
      const b = make();
      const { subject } = await a.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(a, 'github', 'f-1'),
        interactionUid: 'f-1',
      });
      time.advance(3600);
      const [ta, tb] = await Promise.all([
        a.getUpstreamAccessToken(subject, 'github'),
        b.getUpstreamAccessToken(subject, 'github'),
      ]);
      expect(gh.tokenRequests.filter((r) => r.grantType === 'refresh_token')).toHaveLength(1);
      expect(ta.access_token).toBe(tb.access_token);
    } finally {
      await gh.close();
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('refreshes over a store without update() too', async () => {
    const time = clock();
    const gh = await startGithubDouble({ ...CLIENT, users: [OCTOCAT], autoApprove: 'octocat', now: time.now });
    try {
      const identity = createUpstreamIdentity({
        issuer: ISSUER,
        providers: [githubUpstream({ ...CLIENT, baseUrl: gh.url, apiBaseUrl: gh.apiUrl })],
        store: new Map(),
        encryption: { keys: [generateEncryptionKey()] },
        now: time.now,
      });
      const { subject } = await identity.completeUpstreamLogin({
        callbackUrl: await upstreamLogin(identity, 'github', 'm-1'),
        interactionUid: 'm-1',
      });
      const first = await identity.getUpstreamAccessToken(subject, 'github');
      time.advance(28_800);
      const second = await identity.getUpstreamAccessToken(subject, 'github');
      expect(second.access_token).not.toBe(first.access_token);
      gh.revokeAll('octocat');
      time.advance(28_800);
      await expect(identity.getUpstreamAccessToken(subject, 'github')).rejects.toMatchObject({ reason: 'revoked' });
      await expect(identity.getUpstreamAccessToken(subject, 'github')).rejects.toMatchObject({ reason: 'not_linked' });
    } finally {
      await gh.close();
    }
  });
});
