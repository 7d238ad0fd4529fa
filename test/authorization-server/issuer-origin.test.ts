import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizationUrl, pkce, register, type ServedAs, startServedAs } from './helpers.js';

// Every URL in the metadata must come from the issuer: a forged Host (or X-Forwarded-Host from a client the server
// does not trust) would otherwise hand a client an attacker's token endpoint.
const FORGED = { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' };

function urlsIn(value: unknown): string[] {
  if (typeof value === 'string') return /^https?:\/\//.test(value) ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(urlsIn);
  if (value && typeof value === 'object') return Object.values(value).flatMap(urlsIn);
  return [];
}

/** GET with a forged Host header, which fetch() does not let a caller set. */
function getWithForgedHost(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { headers: FORGED }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

async function metadataUrls(as: ServedAs, path: string): Promise<string[]> {
  const response = await getWithForgedHost(`${as.url}${path}`);
  expect(response.status).toBe(200);
  return urlsIn(JSON.parse(response.body));
}

describe.each([
  { name: 'the default issuer (the listening address)', args: [] as string[], issuer: undefined },
  {
    name: '--issuer https://auth.example.com behind a trusted proxy',
    args: ['--issuer', 'https://auth.example.com', '--trust-proxy', '1'],
    issuer: 'https://auth.example.com',
  },
])('endpoints follow the issuer, never the request, with $name', ({ args, issuer }) => {
  let as: ServedAs;
  let origin: string;
  beforeAll(async () => {
    as = await startServedAs({}, args);
    origin = issuer ?? as.url;
  });
  afterAll(() => as.close());

  it('in both metadata documents, under a forged Host and X-Forwarded-Host', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
      const urls = await metadataUrls(as, path);
      expect(urls.length).toBeGreaterThan(5);
      for (const url of urls.filter((u) => !u.startsWith('urn:'))) expect(new URL(url).origin, url).toBe(origin);
    }
  });

  it('in the registration answer and the redirect to the login page', async () => {
    const reg = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'] }, FORGED);
    expect(reg.status).toBe(201);
    for (const url of urlsIn(reg.body).filter((u) => !u.startsWith('http://127.0.0.1:4711'))) {
      expect(new URL(url).origin, url).toBe(origin);
    }
    const start = await fetch(
      authorizationUrl(as, {
        clientId: String(reg.body['client_id']),
        redirectUri: 'http://127.0.0.1:4711/callback',
        challenge: pkce().challenge,
      }),
      { headers: FORGED, redirect: 'manual' },
    );
    expect(start.status).toBe(303);
    expect(new URL(start.headers.get('location')!, origin).origin).toBe(origin);
  });
});
