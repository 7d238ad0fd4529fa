import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type Configuration } from 'oidc-provider';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import {
  type OidcAdapterFactory,
  postgresOidcAdapter,
  redisOidcAdapter,
  sqliteOidcAdapter,
} from '../../src/storage/index.js';
import { POSTGRES_URL, REDIS_URL, temporaryDirectory, uniqueId } from './helpers.js';

const ISSUER = 'http://127.0.0.1/gatehouse-test';
const CLIENT = {
  client_id: 'mcp-client',
  client_secret: 'a-client-secret-of-enough-length',
  redirect_uri: 'http://127.0.0.1:9/callback',
};
const REDEMPTIONS = 50;
const KEYS = [generateEncryptionKey()];
const dir = await temporaryDirectory('oidc-sqlite');
afterAll(() => dir.remove());

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' };

/** Identical configuration for every instance, as behind a load balancer. */
function configuration(adapter: OidcAdapterFactory): Configuration {
  return {
    adapter,
    clients: [
      {
        client_id: CLIENT.client_id,
        client_secret: CLIENT.client_secret,
        redirect_uris: [CLIENT.redirect_uri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    jwks: { keys: [jwk as never] },
    cookies: { keys: ['cookie-signing-key'] },
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    features: { devInteractions: { enabled: false } },
  };
}

async function listen(provider: Provider): Promise<{ url: string; server: Server }> {
  const server = createServer(provider.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Issues a grant and an authorization code directly through the provider's models (no browser login). */
async function issueCode(provider: Provider): Promise<{ code: string; verifier: string }> {
  const verifier = randomBytes(32).toString('base64url');
  const client = await provider.Client.find(CLIENT.client_id);
  const grant = new provider.Grant({ accountId: 'user-1', clientId: CLIENT.client_id });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  const code = new provider.AuthorizationCode({
    accountId: 'user-1',
    client: client!,
    grantId,
    scope: 'openid offline_access',
    redirectUri: CLIENT.redirect_uri,
    codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
    codeChallengeMethod: 'S256' as const,
    gty: 'authorization_code',
    authTime: Math.floor(Date.now() / 1000),
  });
  return { code: await code.save(), verifier };
}

async function redeem(
  baseUrl: string,
  body: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${baseUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/**
 * Two Provider instances with the same configuration share one backend; 50 requests redeem the same code at once,
 * alternating between the instances.
 */
async function raceOneCode(makeAdapter: () => OidcAdapterFactory) {
  const adapters = [makeAdapter(), makeAdapter()];
  await Promise.all(adapters.map((a) => a.ready()));
  const providers = adapters.map((a) => new Provider(ISSUER, configuration(a)));
  const servers = await Promise.all(providers.map(listen));
  const serverErrors: unknown[] = [];
  for (const p of providers) p.on('server_error', (_ctx, error) => serverErrors.push(error));
  try {
    const { code, verifier } = await issueCode(providers[0]!);
    const body = {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: CLIENT.redirect_uri,
      client_id: CLIENT.client_id,
      client_secret: CLIENT.client_secret,
    };
    const results = await Promise.all(Array.from({ length: REDEMPTIONS }, (_, i) => redeem(servers[i % 2]!.url, body)));
    return { results, serverErrors, providers, servers: servers.map((s) => s.url) };
  } finally {
    for (const { server } of servers) server.close();
    await Promise.all(adapters.map((a) => a.close()));
  }
}

function expectExactlyOneWinner({ results, serverErrors }: Awaited<ReturnType<typeof raceOneCode>>) {
  const ok = results.filter((r) => r.status === 200);
  const rejected = results.filter((r) => r.status === 400 && r.body['error'] === 'invalid_grant');
  expect(serverErrors).toEqual([]);
  expect(ok).toHaveLength(1);
  expect(ok[0]!.body).toMatchObject({ token_type: 'Bearer' });
  expect(typeof ok[0]!.body['access_token']).toBe('string');
  expect(rejected).toHaveLength(REDEMPTIONS - 1);
}

describe('one authorization code, 50 concurrent redemptions through two AS instances', () => {
  it('sharing Redis: exactly one success, 49 invalid_grant', async () => {
    const prefix = `gatehouse-test:${uniqueId('oidc')}:`;
    expectExactlyOneWinner(await raceOneCode(() => redisOidcAdapter({ url: REDIS_URL, prefix, encryptionKeys: KEYS })));
  });

  it('sharing PostgreSQL: exactly one success, 49 invalid_grant', async () => {
    const table = uniqueId('oidc');
    try {
      expectExactlyOneWinner(
        await raceOneCode(() => postgresOidcAdapter({ url: POSTGRES_URL, table, encryptionKeys: KEYS })),
      );
    } finally {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP TABLE IF EXISTS ${table}`);
      await client.end();
    }
  });

  it('sharing one SQLite file: exactly one success, 49 invalid_grant', async () => {
    const path = `${dir.path}/as.db`;
    expectExactlyOneWinner(await raceOneCode(() => sqliteOidcAdapter({ path, encryptionKeys: KEYS })));
  });
});
