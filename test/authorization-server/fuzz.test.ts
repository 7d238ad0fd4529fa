import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../../src/oauth/index.js';
import { DOWNSTREAM, RESOURCE, type ServedAs, startServedAs } from './helpers.js';

const PATHS = [
  '/auth',
  '/token',
  '/reg',
  '/reg/some-client',
  '/token/introspection',
  '/token/revocation',
  '/jwks',
  '/me',
  '/session/end',
  '/session/end/confirm',
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration',
  '/interaction/abc',
  '/interaction/abc/login',
  '/interaction/abc/confirm',
  '/interaction/%00',
  '/nope',
];
const PARAMS = [
  'grant_type',
  'code',
  'redirect_uri',
  'client_id',
  'client_secret',
  'code_verifier',
  'code_challenge',
  'code_challenge_method',
  'refresh_token',
  'resource',
  'scope',
  'state',
  'response_type',
  'token',
  'token_type_hint',
  'subject_token',
  'subject_token_type',
  'audience',
  'username',
  'password',
  'csrf',
  'decision',
  'prompt',
];
const VALUES = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  TOKEN_EXCHANGE_GRANT_TYPE,
  TOKEN_TYPE.accessToken,
  'S256',
  'plain',
  'code',
  'web-app',
  'mcp-server',
  RESOURCE,
  DOWNSTREAM,
  'https://10.0.0.1/client.json',
  'http://127.0.0.1:4711/callback',
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
  'mcp:tools',
  '',
  '%',
  '\u0000',
  'a'.repeat(3000),
];

const request = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'),
  path: fc.constantFrom(...PATHS),
  suffix: fc.oneof(
    fc.constant(''),
    fc.string({ maxLength: 12 }).map((s) => encodeURIComponent(s)),
  ),
  query: fc.array(fc.tuple(fc.constantFrom(...PARAMS), fc.oneof(fc.constantFrom(...VALUES), fc.string())), {
    maxLength: 6,
  }),
  body: fc.oneof(
    fc.constant(undefined),
    fc.array(fc.tuple(fc.constantFrom(...PARAMS), fc.oneof(fc.constantFrom(...VALUES), fc.string())), { maxLength: 8 }),
    fc.json(),
    fc.string(),
  ),
  contentType: fc.constantFrom(
    'application/x-www-form-urlencoded',
    'application/json',
    'text/plain',
    'multipart/form-data',
    undefined,
  ),
  authorization: fc.oneof(
    fc.constant(undefined),
    fc.constant(`Basic ${Buffer.from('mcp-server:mcp-server-secret-long-enough-123').toString('base64')}`),
    fc.constant('Basic !!!'),
    fc.string().map((s) => `Bearer ${s.replace(/[^\x20-\x7e]/g, '')}`),
  ),
});

describe('malformed requests to every endpoint', () => {
  let as: ServedAs;
  beforeAll(async () => {
    as = await startServedAs({
      clients: [
        {
          client_id: 'web-app',
          token_endpoint_auth_method: 'none',
          redirect_uris: ['https://app.example.com/callback'],
        },
        {
          client_id: 'mcp-server',
          client_secret: 'mcp-server-secret-long-enough-123',
          grant_types: [TOKEN_EXCHANGE_GRANT_TYPE, 'client_credentials'],
          redirect_uris: [],
          response_types: [],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
      tokenExchange: [
        { clientId: 'mcp-server', from: [RESOURCE], to: [{ resource: DOWNSTREAM, scopes: ['api:read'] }] },
      ],
      loginRateLimit: { attempts: 1000 },
    });
  });
  afterAll(() => as.close());

  it('never answer 5xx', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const url = new URL(`${as.url}${r.path}${r.suffix}`);
        for (const [k, v] of r.query) url.searchParams.append(k, v);
        let body: string | undefined;
        if (r.body !== undefined && r.method !== 'GET' && r.method !== 'OPTIONS') {
          body = Array.isArray(r.body) ? new URLSearchParams(r.body as Array<[string, string]>).toString() : r.body;
        }
        const headers: Record<string, string> = { accept: 'text/html,application/json' };
        if (r.contentType && body !== undefined) headers['content-type'] = r.contentType;
        if (r.authorization) headers['authorization'] = r.authorization;
        const response = await fetch(url, { method: r.method, headers, body, redirect: 'manual' });
        await response.arrayBuffer();
        expect(response.status, `${r.method} ${url.pathname}${url.search} ${body ?? ''}`).toBeLessThan(500);
      }),
      { numRuns: 400 },
    );
  });
});
