import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizationUrl, Browser, pkce, register, token } from '../authorization-server/helpers.js';
import { type Cluster, INTROSPECTOR, PASSWORD, RESOURCE, redeemCode, startCluster } from './cluster.js';

const REDIRECT = 'http://127.0.0.1:4712/callback';
const ADMIN = { username: 'admin', password: PASSWORD };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function introspect(url: string, value: string) {
  const response = await fetch(`${url}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${INTROSPECTOR.id}:${INTROSPECTOR.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token: value }),
  });
  const body = (await response.json()) as { active: boolean; client_id?: string };
  if (typeof body.active !== 'boolean')
    throw new Error(`introspection answered ${response.status} ${JSON.stringify(body)}`);
  return body;
}

/** A browser-style login through the proxy, from one simulated client address; returns the token response. */
async function login(cluster: Cluster, address: string) {
  const reg = await register(cluster, { redirect_uris: [REDIRECT], client_name: 'Cluster test' });
  expect(reg.status).toBe(201);
  const clientId = String(reg.body['client_id']);
  const { verifier, challenge } = pkce();
  const browser = new Browser(cluster.clientFetch(address));
  const first = cluster.log.length;
  const { callback, last } = await browser.authorize(
    authorizationUrl(cluster, { clientId, redirectUri: REDIRECT, challenge, resource: RESOURCE }),
    REDIRECT,
    { credentials: ADMIN },
  );
  expect(last.html).not.toContain('form token');
  expect(callback?.searchParams.get('code'), last.html).toBeTruthy();
  const steps = cluster.log.slice(first);
  const tokens = await redeemCode(cluster, { callback, redirectUri: REDIRECT, verifier, clientId, resource: RESOURCE });
  return { clientId, tokens, steps, browser };
}

const refresh = (url: string, clientId: string, refreshToken: string) =>
  token({ url }, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, resource: RESOURCE });

describe.each(['redis', 'postgres'] as const)('three gatehouse serve instances on %s', (backend) => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(backend);
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('answer /healthz and /readyz with JSON on every instance', async () => {
    for (const instance of cluster.instances) {
      const health = await fetch(`${instance.url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
      const ready = await fetch(`${instance.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready', store: 'ok', keys: 'ok' });
    }
  });

  it('complete a browser login whose every step lands on a different instance than the step before', async () => {
    const { tokens, steps } = await login(cluster, '127.0.0.11');
    expect(tokens.status).toBe(200);
    expect(tokens.body['access_token']).toBeTruthy();
    // authorize, login page, login post, consent page, consent post, resume, …: all three instances served it.
    expect(steps.length).toBeGreaterThanOrEqual(5);
    expect(new Set(steps.map((s) => s.instance)).size).toBe(3);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!.instance).not.toBe(steps[i - 1]!.instance);
    expect(steps.some((s) => s.method === 'POST' && s.path.endsWith('/login'))).toBe(true);
    expect(steps.some((s) => s.method === 'POST' && s.path.endsWith('/confirm'))).toBe(true);
  });

  it('rotate a refresh token on one instance; the grace window and reuse detection hold on the others', async () => {
    const [a, b, c] = cluster.instances.map((i) => i.url) as [string, string, string];
    const { clientId, tokens } = await login(cluster, '127.0.0.12');
    const original = tokens.body['refresh_token']!;
    const rotated = await refresh(a, clientId, original);
    expect(rotated.status).toBe(200);
    // Within the grace window, the same old token on another instance gives the same new pair.
    const again = await refresh(b, clientId, original);
    expect(again.status).toBe(200);
    expect(again.body['refresh_token']).toBe(rotated.body['refresh_token']);
    await sleep(2200);
    // After it: reuse, on a third instance, revokes the grant; the rotated token dies on every instance.
    const reuse = await refresh(c, clientId, original);
    expect(reuse.status).toBe(400);
    expect(reuse.body['error']).toBe('invalid_grant');
    for (const url of [a, b, c]) {
      expect((await refresh(url, clientId, rotated.body['refresh_token']!)).body['error']).toBe('invalid_grant');
      expect((await introspect(url, rotated.body['refresh_token']!)).active).toBe(false);
    }
  });

  it('revoke a token through one instance and every instance sees it revoked', async () => {
    const { clientId, tokens } = await login(cluster, '127.0.0.13');
    // Access tokens are JWTs (verified by signature); refresh tokens are looked up in the store.
    const refreshToken = tokens.body['refresh_token']!;
    for (const instance of cluster.instances) expect((await introspect(instance.url, refreshToken)).active).toBe(true);
    const revoked = await fetch(`${cluster.instances[1]!.url}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tokens.body['refresh_token']!, client_id: clientId }),
    });
    expect(revoked.status).toBe(200);
    for (const instance of cluster.instances) {
      expect((await introspect(instance.url, refreshToken)).active).toBe(false);
      expect((await refresh(instance.url, clientId, refreshToken)).body['error']).toBe('invalid_grant');
    }
  });

  it('apply `gatehouse admin` changes on every instance at once', async () => {
    const { clientId, tokens } = await login(cluster, '127.0.0.14');
    const grants = await cluster.admin(['grants', 'list']);
    expect(grants.status, grants.stderr).toBe(0);
    const grant = grants.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { grant_id: string; client_id: string })
      .find((g) => g.client_id === clientId);
    expect(grant).toBeDefined();
    const revoke = await cluster.admin(['grants', 'revoke', grant!.grant_id]);
    expect(revoke.status, revoke.stderr).toBe(0);
    for (const instance of cluster.instances) {
      expect((await refresh(instance.url, clientId, tokens.body['refresh_token']!)).body['error']).toBe(
        'invalid_grant',
      );
    }
    const client = await cluster.admin(['clients', 'revoke', clientId]);
    expect(client.status, client.stderr).toBe(0);
    for (const instance of cluster.instances) {
      const answer = await refresh(instance.url, clientId, 'anything');
      expect(answer.status).toBe(401);
      expect(answer.body['error']).toBe('invalid_client');
    }
  });

  it('share the login rate limits: three instances allow what one allows, per attacker, never locking others out', async () => {
    const reg = await register(cluster, { redirect_uris: [REDIRECT], client_name: 'Attacked' });
    const clientId = String(reg.body['client_id']);
    const attacker = new Browser(cluster.clientFetch('127.0.0.66'));
    const wrong = { username: 'admin', password: 'not the password' };
    // The attacker also sends its own X-Forwarded-For: with --trust-proxy 1 it is ignored.
    const spoofing = new Browser(((input: string | URL, init?: RequestInit) =>
      attacker.fetchImpl(input, {
        ...init,
        headers: { ...Object.fromEntries(new Headers(init?.headers)), 'x-forwarded-for': randomAddress() },
      })) as typeof fetch);
    spoofing.cookies.clear();
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    let lastBody = '';
    for (let attempt = 0; attempt < 11; attempt++) {
      const { challenge } = pkce();
      const { last } = await spoofing.authorize(
        authorizationUrl(cluster, { clientId, redirectUri: REDIRECT, challenge, resource: RESOURCE }),
        REDIRECT,
        { credentials: wrong },
      );
      statuses.push(last.status);
      lastBody = last.html;
    }
    // 10 failures (spread over the three instances by the proxy), then 429 on whichever instance is next.
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses[10]).toBe(429);
    expect(lastBody).toMatch(/Too many failed sign-in attempts\. Try again in \d+ seconds\./);
    // Retry-After, and JSON for a client that asks for it.
    const { challenge } = pkce();
    const jsonAttempt = await postLogin(cluster, attacker, clientId, challenge, wrong);
    retryAfter = jsonAttempt.headers.get('retry-after');
    expect(jsonAttempt.status).toBe(429);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    expect(await jsonAttempt.json()).toMatchObject({ error: 'temporarily_unavailable' });
    // The real admin, from another address, still signs in.
    const { tokens } = await login(cluster, '127.0.0.67');
    expect(tokens.status).toBe(200);
  });
});

function randomAddress(): string {
  return `198.51.100.${1 + Math.floor(Math.random() * 250)}`;
}

/** Gets a login page through the proxy and posts the credentials to it, asking for JSON. */
async function postLogin(
  cluster: Cluster,
  browser: Browser,
  clientId: string,
  challenge: string,
  credentials: { username: string; password: string },
) {
  let url = authorizationUrl(cluster, { clientId, redirectUri: REDIRECT, challenge, resource: RESOURCE });
  for (let i = 0; i < 5; i++) {
    const response = await browser.request(url);
    const location = response.headers.get('location');
    if (!location) {
      const html = await response.text();
      const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
      const action = /action="([^"]+\/login)"/.exec(html)?.[1];
      if (!csrf || !action) throw new Error(`no login form: ${html}`);
      const cookie = [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
      return browser.fetchImpl(new URL(action, url), {
        method: 'POST',
        headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: new URLSearchParams({ csrf, ...credentials }).toString(),
        redirect: 'manual',
      });
    }
    url = new URL(location, url);
  }
  throw new Error('no login page');
}
