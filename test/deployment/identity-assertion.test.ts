import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID_JAG_JWT_TYPE, JWT_BEARER_GRANT_TYPE } from '../../src/oauth/jwt-bearer.js';
import { type Cluster, INTROSPECTOR, RESOURCE, startCluster } from './cluster.js';

const IDP = 'https://idp.acme.example';
const AGENT = { id: 'acme-agent', secret: 'acme-agent-secret-0123456789abcdef' };

// An identity assertion grant is single-use across every instance on the store, not per process.
describe.each(['redis', 'postgres'] as const)('ID-JAG on three instances sharing %s', (backend) => {
  let cluster: Cluster;
  let keys: Awaited<ReturnType<typeof generateKeyPair>>;

  beforeAll(async () => {
    keys = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(keys.publicKey)), kid: 'acme-1', alg: 'ES256' };
    const client = (id: string, secret: string, grantTypes: string[]) => ({
      client_id: id,
      client_secret: secret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: grantTypes,
      response_types: [],
      redirect_uris: [],
    });
    cluster = await startCluster(backend, {
      config: {
        clients: [
          client(INTROSPECTOR.id, INTROSPECTOR.secret, []),
          client(AGENT.id, AGENT.secret, [JWT_BEARER_GRANT_TYPE]),
        ],
        enterpriseIdps: [{ issuer: IDP, jwks: { keys: [jwk] }, name: 'acme' }],
      },
    });
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('accepts a grant once when it reaches every instance at the same moment', async () => {
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({
      client_id: AGENT.id,
      resource: RESOURCE,
      scope: 'mcp:tools',
      jti: randomUUID(),
    })
      .setProtectedHeader({ alg: 'ES256', typ: ID_JAG_JWT_TYPE, kid: 'acme-1' })
      .setIssuer(IDP)
      .setSubject('bob')
      .setAudience(cluster.url)
      .setIssuedAt(now)
      .setExpirationTime(now + 120)
      .sign(keys.privateKey);
    const answers = await Promise.all(
      [...cluster.instances, ...cluster.instances].map(async (instance) => {
        const response = await fetch(`${instance.url}/token`, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`${AGENT.id}:${AGENT.secret}`).toString('base64')}`,
          },
          body: new URLSearchParams({ grant_type: JWT_BEARER_GRANT_TYPE, assertion }),
        });
        return { status: response.status, body: (await response.json()) as Record<string, string> };
      }),
    );
    const accepted = answers.filter((a) => a.status === 200);
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.body['scope']).toBe('mcp:tools');
    for (const refused of answers.filter((a) => a.status !== 200)) {
      expect(refused).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
      expect(refused.body['error_description']).toMatch(/already used/);
    }
  });
});
