import { describe, expect, it } from 'vitest';
import {
  admissionProblem,
  createUpstreamIdentity,
  entraUpstream,
  envName,
  githubUpstream,
  googleUpstream,
  parseTokenBody,
  parseUpstreamSpec,
  UpstreamConfigError,
  type UpstreamProfile,
} from '../../src/authorization-server/upstream/index.js';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { memoryStore } from '../../src/storage/memory.js';
import { startGithubDouble } from './github-double.js';
import { engine, upstreamLogin } from './helpers.js';

const env = {
  GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID: 'gh-id',
  GATEHOUSE_UPSTREAM_GITHUB_CLIENT_SECRET: 'gh-secret',
  GATEHOUSE_UPSTREAM_GOOGLE_CLIENT_ID: 'g-id',
  GATEHOUSE_UPSTREAM_ENTRA_CLIENT_ID: 'e-id',
  GATEHOUSE_UPSTREAM_CORP_SSO_CLIENT_ID: 'corp-id',
  GATEHOUSE_UPSTREAM_OIDC_CLIENT_ID: 'oidc-id',
};

describe('--upstream specs', () => {
  it('builds presets with secrets from the environment', async () => {
    const github = parseUpstreamSpec('github', { env });
    expect(github).toMatchObject({ name: 'github', protocol: 'oauth2', clientId: 'gh-id', clientSecret: 'gh-secret' });
    expect(await github.endpoints({ fetch, timeoutMs: 1000 })).toEqual({
      authorizationEndpoint: 'https://github.com/login/oauth/authorize',
      tokenEndpoint: 'https://github.com/login/oauth/access_token',
    });
    const google = parseUpstreamSpec('google', { env });
    expect(google).toMatchObject({ name: 'google', protocol: 'oidc', clientId: 'g-id' });
    expect(google.authorizationParams).toEqual({ access_type: 'offline', prompt: 'consent' });

    const entra = parseUpstreamSpec('entra:contoso.onmicrosoft.com', { env });
    expect(entra).toMatchObject({ name: 'entra', clientId: 'e-id' });
    expect(entra.scopes).toContain('offline_access');

    const corp = parseUpstreamSpec('corp-sso=oidc:https://idp.example.com/realms/main', { env });
    expect(corp).toMatchObject({ name: 'corp-sso', displayName: 'idp.example.com', clientId: 'corp-id' });
    expect(parseUpstreamSpec('oidc:https://idp.example.com', { env }).name).toBe('oidc');
  });

  it('names the environment variables to set, and refuses unknown kinds and insecure URLs', () => {
    expect(envName('corp-sso', 'CLIENT_SECRET')).toBe('GATEHOUSE_UPSTREAM_CORP_SSO_CLIENT_SECRET');
    expect(() => parseUpstreamSpec('github', { env: {} })).toThrow(UpstreamConfigError);
    try {
      parseUpstreamSpec('github', { env: {} });
    } catch (error) {
      expect((error as UpstreamConfigError).hint).toContain('GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID');
    }
    expect(() => parseUpstreamSpec('gitlab', { env })).toThrow(/Unknown upstream/);
    expect(() => parseUpstreamSpec('entra', { env })).toThrow(/tenant/);
    expect(() => parseUpstreamSpec('oidc:http://idp.example.com', { env })).toThrow(UpstreamConfigError);
    expect(() => parseUpstreamSpec('Bad_Name=oidc:https://idp.example.com', { env })).toThrow(/Invalid upstream name/);
  });

  it('takes secrets and base URLs from the config file', async () => {
    const github = parseUpstreamSpec('github', {
      env: {},
      secrets: { github: { clientId: 'from-config', clientSecret: 's' } },
      overrides: { github: { baseUrl: 'http://127.0.0.1:1234', apiBaseUrl: 'http://127.0.0.1:1234/api' } },
    });
    expect(github.clientId).toBe('from-config');
    expect((await github.endpoints({ fetch, timeoutMs: 1000 })).tokenEndpoint).toBe(
      'http://127.0.0.1:1234/login/oauth/access_token',
    );
  });

  it('Entra: tenant-aware issuer, and email counts as verified only with xms_edov', () => {
    const entra = entraUpstream({ tenant: 'organizations', clientId: 'x', baseUrl: 'http://127.0.0.1:9999' });
    const profile = entra.profileFromClaims!({ sub: 's', email: 'a@contoso.com', tid: 't1' });
    expect(profile.emailVerified).toBe(false);
    expect(entra.profileFromClaims!({ sub: 's', email: 'a@contoso.com', xms_edov: true }).emailVerified).toBe(true);
    expect(() => entraUpstream({ tenant: 'bad/tenant', clientId: 'x' })).toThrow(UpstreamConfigError);
    expect(googleUpstream({ clientId: 'g' }).scopes).toEqual(['openid', 'email', 'profile']);
  });

  it('refuses two upstreams with one name and resources mapped to unknown upstreams', () => {
    const base = {
      issuer: 'http://127.0.0.1:1',
      store: memoryStore(),
      encryption: { keys: [generateEncryptionKey()] },
    };
    const gh = githubUpstream({ clientId: 'a' });
    expect(() => createUpstreamIdentity({ ...base, providers: [gh, gh] })).toThrow(/named "github"/);
    expect(() =>
      createUpstreamIdentity({
        ...base,
        providers: [gh],
        resources: [{ resource: 'https://x.example', upstream: 'corp' }],
      }),
    ).toThrow(/not configured/);
  });
});

describe('token responses', () => {
  it('reads JSON and form-encoded bodies whatever the content type says', () => {
    expect(parseTokenBody('access_token=gho_1&scope=repo%2Cgist&token_type=bearer', 'text/plain')).toEqual({
      access_token: 'gho_1',
      scope: 'repo,gist',
      token_type: 'bearer',
    });
    expect(parseTokenBody('{"access_token":"a"}', 'application/x-www-form-urlencoded')).toEqual({ access_token: 'a' });
    expect(parseTokenBody('<html>', 'text/html')).toBeUndefined();
  });

  it('turns a GitHub error answered with HTTP 200 into a typed error', async () => {
    const gh = await startGithubDouble({
      clientId: 'c',
      clientSecret: 'right',
      users: [{ id: 1, login: 'u', password: 'p' }],
      autoApprove: 'u',
    });
    try {
      const { identity } = engine({
        providers: [githubUpstream({ clientId: 'c', clientSecret: 'wrong', baseUrl: gh.url, apiBaseUrl: gh.apiUrl })],
      });
      const callback = await upstreamLogin(identity, 'github', 'x-1');
      await expect(
        identity.completeUpstreamLogin({ callbackUrl: callback, interactionUid: 'x-1' }),
      ).rejects.toMatchObject({ name: 'UpstreamError', error: 'access_denied', reason: 'upstream_error' });
    } finally {
      await gh.close();
    }
  });
});

describe('admission rules', () => {
  const profile = (p: Partial<UpstreamProfile>): UpstreamProfile => ({ subject: 's', claims: {}, ...p });
  it('checks domains on verified addresses only, case-insensitively', () => {
    const rules = { allowedEmailDomains: ['Example.com'] };
    expect(admissionProblem(profile({ email: 'A@EXAMPLE.COM', emailVerified: true }), rules)).toBeUndefined();
    expect(admissionProblem(profile({ email: 'a@example.com', emailVerified: false }), rules)).toMatch(/verified/);
    expect(admissionProblem(profile({ email: 'a@example.com.evil.test', emailVerified: true }), rules)).toMatch(
      /not allowed/,
    );
    expect(admissionProblem(profile({}), rules)).toMatch(/verified/);
  });
  it('checks required claims: values, lists, arrays and predicates', () => {
    const p = profile({ claims: { hd: 'example.com', groups: ['a', 'b'], level: 3 } });
    expect(admissionProblem(p, { requiredClaims: { hd: 'example.com' } })).toBeUndefined();
    expect(admissionProblem(p, { requiredClaims: { groups: ['x', 'b'] } })).toBeUndefined();
    expect(admissionProblem(p, { requiredClaims: { level: (v) => Number(v) >= 3 } })).toBeUndefined();
    expect(admissionProblem(p, { requiredClaims: { hd: 'other.com' } })).toMatch(/"hd"/);
    expect(admissionProblem(p, { requiredClaims: { missing: true } })).toMatch(/"missing"/);
  });
});
