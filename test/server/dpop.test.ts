import { randomBytes } from 'node:crypto';
import KeyvRedis from '@keyv/redis';
import { DpopSession } from '@modelcontextprotocol/client';
import { decodeJwt } from 'jose';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth } from '../../src/client/index.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { SERVE_USER, type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type Slot, startSlot, userTokens } from '../helpers/serve-stack.js';
import { sendToolsList as send, whoamiMcp } from './helpers.js';

const REDIS = 'redis://127.0.0.1:6379';
// `gatehouse serve` + protect()ed SDK servers + the OAuth client, DPoP end to end (RFC 9449).
describe('DPoP end to end', () => {
  let as: ServeProcess;
  let instanceA: Slot; // two instances of one resource, sharing the replay cache in Redis
  let instanceB: Slot;
  let strict: Slot; // dpop=required at the AS, required + nonces at the resource
  const replayStores: Keyv[] = [];

  beforeAll(async () => {
    [instanceA, instanceB, strict] = await Promise.all([startSlot(), startSlot(), startSlot()]);
    as = await startServeProcess([
      '--resource',
      `${instanceA.mcpUrl}=mcp:tools`,
      '--resource',
      `${strict.mcpUrl}=mcp:tools,dpop=required`,
    ]);
    const namespace = `gatehouse-dpop-test-${randomBytes(6).toString('hex')}`;
    for (const slot of [instanceA, instanceB]) {
      const store = new Keyv(new KeyvRedis(REDIS), { namespace });
      replayStores.push(store);
      slot.set(
        protect(whoamiMcp(), {
          resource: instanceA.mcpUrl,
          authorizationServers: [as.url],
          verifier: jwtVerifier({ issuer: as.url }),
          requiredScopes: ['mcp:tools'],
          dpop: { replayStore: store },
        }),
      );
    }
    strict.set(
      protect(whoamiMcp(), {
        resource: strict.mcpUrl,
        authorizationServers: [as.url],
        verifier: jwtVerifier({ issuer: as.url }),
        requiredScopes: ['mcp:tools'],
        dpop: { required: true, nonce: true, algorithms: ['ES256'] },
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await as?.close();
    await Promise.all([instanceA, instanceB, strict].map((s) => s?.close()));
    for (const store of replayStores) {
      await store.clear();
      await store.disconnect();
    }
  });

  it('OAuth({ dpop: true }) logs in and calls a tool; the token is bound, and useless without its key', async () => {
    const oauth = new OAuth({ tokenStorage: 'memory', mcpUrl: instanceA.mcpUrl, login: SERVE_USER, dpop: true });
    await using client = new Client(instanceA.mcpUrl, { auth: oauth });
    const { data } = await client.callTool<{ subject: string }>('whoami');
    expect(data.subject).toBe('admin');
    const tokens = await oauth.tokens();
    expect(tokens?.token_type?.toLowerCase()).toBe('dpop');
    const stolen = tokens!.access_token;
    expect((decodeJwt(stolen)['cnf'] as { jkt?: string }).jkt).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // Presented as Bearer: refused, with a DPoP challenge.
    const asBearer = await send(instanceA.mcpUrl, `Bearer ${stolen}`);
    expect(asBearer.status).toBe(401);
    expect(asBearer.headers.get('www-authenticate')).toMatch(/DPoP algs="ES256 RS256 PS256 EdDSA"/);
    expect(await asBearer.json()).toMatchObject({
      error: 'invalid_token',
      error_description: expect.stringMatching(/DPoP-bound/),
    });
    // With a proof from the thief's own key: refused.
    const thief = await DpopSession.create();
    const proof = await thief.buildProof({ htm: 'POST', htu: instanceA.mcpUrl, accessToken: stolen });
    const withOtherKey = await send(instanceA.mcpUrl, `DPoP ${stolen}`, proof);
    expect(withOtherKey.status).toBe(401);
    expect(withOtherKey.headers.get('www-authenticate')).toMatch(/^Bearer .*, DPoP error="invalid_dpop_proof"/);
    expect(await withOtherKey.json()).toMatchObject({ error_description: expect.stringMatching(/cnf\.jkt/) });
  });

  it('checks htm, htu and ath, and refuses a proof replayed to another instance sharing the Redis replay cache', async () => {
    const session = await DpopSession.create();
    const oauth = new OAuth({ tokenStorage: 'memory', mcpUrl: instanceA.mcpUrl, login: SERVE_USER, dpop: session });
    await oauth.authorize();
    const token = (await oauth.tokens())!.access_token;
    const proof = (overrides: { htm?: string; htu?: string; accessToken?: string } = {}) =>
      session.buildProof({ htm: 'POST', htu: instanceA.mcpUrl, accessToken: token, ...overrides });

    const fresh = await proof();
    expect((await send(instanceA.mcpUrl, `DPoP ${token}`, fresh)).status).toBe(200);
    const replayed = await send(instanceB.mcpUrl, `DPoP ${token}`, fresh);
    expect(replayed.status).toBe(401);
    expect(await replayed.json()).toMatchObject({
      error: 'invalid_dpop_proof',
      error_description: expect.stringMatching(/already used/),
    });
    // Instance B accepts a fresh proof for itself (htu is the resource's public URL).
    expect((await send(instanceB.mcpUrl, `DPoP ${token}`, await proof())).status).toBe(200);

    for (const [bad, reason] of [
      [await proof({ htm: 'GET' }), /htm/],
      [await proof({ htu: `${instanceA.url}/other` }), /htu/],
      [await proof({ accessToken: 'another-token' }), /ath/],
    ] as const) {
      const response = await send(instanceA.mcpUrl, `DPoP ${token}`, bad);
      expect(response.status).toBe(401);
      expect(await response.json()).toMatchObject({
        error: 'invalid_dpop_proof',
        error_description: expect.stringMatching(reason),
      });
    }
    // A proof whose iat is far in the past.
    const old = await send(instanceA.mcpUrl, `DPoP ${token}`, await oldProof(session, token, instanceA.mcpUrl));
    expect(old.status).toBe(401);
    expect(await old.json()).toMatchObject({
      error: 'invalid_dpop_proof',
      error_description: expect.stringMatching(/iat/),
    });
    // A bound token with no proof at all.
    expect((await send(instanceA.mcpUrl, `DPoP ${token}`)).status).toBe(401);
  });

  it('advertises DPoP in the metadata: algorithms everywhere, bound tokens required where configured', async () => {
    const open = await (await fetch(`${instanceA.url}/.well-known/oauth-protected-resource/mcp`)).json();
    expect(open).toMatchObject({ dpop_signing_alg_values_supported: ['ES256', 'RS256', 'PS256', 'EdDSA'] });
    expect(open).not.toHaveProperty('dpop_bound_access_tokens_required');
    const required = await (await fetch(`${strict.url}/.well-known/oauth-protected-resource/mcp`)).json();
    expect(required).toMatchObject({
      dpop_signing_alg_values_supported: ['ES256'],
      dpop_bound_access_tokens_required: true,
    });
    const anonymous = await send(strict.mcpUrl, 'Bearer x');
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^DPoP /);
    expect(anonymous.headers.get('dpop-nonce')).toBeTruthy();
  });

  it('a resource requiring DPoP: the AS refuses unbound tokens, the client follows use_dpop_nonce', async () => {
    const unbound = await userTokens(as.url, strict.mcpUrl);
    expect(unbound.status).toBe(400);
    expect(unbound.body['error_description']).toMatch(/DPoP/);

    const oauth = new OAuth({ tokenStorage: 'memory', mcpUrl: strict.mcpUrl, login: SERVE_USER, dpop: true });
    await using client = new Client(strict.mcpUrl, { auth: oauth });
    expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe('admin');
    // A proof without the server's nonce gets use_dpop_nonce and a nonce to retry with.
    const session = await DpopSession.create();
    const other = new OAuth({ tokenStorage: 'memory', mcpUrl: strict.mcpUrl, login: SERVE_USER, dpop: session });
    await other.authorize();
    const token = (await other.tokens())!.access_token;
    const noNonce = await send(
      strict.mcpUrl,
      `DPoP ${token}`,
      await session.buildProof({ htm: 'POST', htu: strict.mcpUrl, accessToken: token }),
    );
    expect(noNonce.status).toBe(401);
    expect(noNonce.headers.get('www-authenticate')).toContain('error="use_dpop_nonce"');
    const nonce = noNonce.headers.get('dpop-nonce')!;
    const withNonce = await send(
      strict.mcpUrl,
      `DPoP ${token}`,
      await session.buildProof({ htm: 'POST', htu: strict.mcpUrl, accessToken: token, nonce }),
    );
    expect(withNonce.status).toBe(200);
  });
});

/** A proof signed by `session`'s key but issued 10 minutes ago. */
async function oldProof(session: DpopSession, token: string, htu: string): Promise<string> {
  const realNow = Date.now;
  Date.now = () => realNow() - 600_000;
  try {
    return await session.buildProof({ htm: 'POST', htu, accessToken: token });
  } finally {
    Date.now = realNow;
  }
}
