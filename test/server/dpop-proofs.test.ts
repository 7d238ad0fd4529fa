// docs/server.md "DPoP": every check of the proof, the challenges and the nonces, through protect() around an SDK
// server over HTTP. Proofs are built by hand here so that each one breaks exactly one rule.
import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, type KeyObject, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { type ProtectOptions, protect } from '../../src/server/protect.js';
import {
  startTestAuthorizationServer,
  type TestAuthorizationServer,
} from '../../src/testing/test-authorization-server.js';
import { type Slot, startSlot } from '../helpers/serve-stack.js';
import { sendToolsList as send, whoamiMcp } from './helpers.js';

interface ProofKey {
  privateKey: KeyObject | CryptoKey;
  jwk: JWK;
  jkt: string;
  alg: string;
}

async function proofKey(alg = 'ES256'): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk), alg };
}

/** A DPoP proof (RFC 9449 §4.2) for a POST to `htu` with `token`; `header` and `claims` override single members. */
function proof(
  key: ProofKey,
  htu: string,
  token: string,
  { header = {}, claims = {} }: { header?: Record<string, unknown>; claims?: Record<string, unknown> } = {},
): Promise<string> {
  return new SignJWT({
    jti: randomUUID(),
    htm: 'POST',
    htu,
    iat: Math.floor(Date.now() / 1000),
    ath: createHash('sha256').update(token).digest('base64url'),
    ...claims,
  })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk, ...header })
    .sign(key.privateKey);
}

describe('DPoP proofs at protect() (RFC 9449)', () => {
  let as: TestAuthorizationServer;
  let open: Slot; // defaults: DPoP for bound tokens, Bearer for the rest
  let strict: Slot; // required, nonces with a shared secret
  let twin: Slot; // another instance of `strict`'s resource with the same nonce secret
  let stranger: Slot; // the same resource with another nonce secret
  let key: ProofKey;
  let bound: string; // a token bound to `key` for `open`

  beforeAll(async () => {
    as = await startTestAuthorizationServer();
    [open, strict, twin, stranger] = await Promise.all([startSlot(), startSlot(), startSlot(), startSlot()]);
    const options = (resource: string, dpop?: ProtectOptions['dpop']): ProtectOptions => ({
      resource,
      authorizationServers: [as.issuer],
      verifier: jwtVerifier({ issuer: as.issuer }),
      requiredScopes: ['mcp:tools'],
      ...(dpop ? { dpop } : {}),
    });
    open.set(protect(whoamiMcp(), options(open.mcpUrl)));
    const nonce = { secret: 'shared-nonce-secret-0123456789abcdef' };
    strict.set(protect(whoamiMcp(), options(strict.mcpUrl, { required: true, nonce })));
    twin.set(protect(whoamiMcp(), options(strict.mcpUrl, { required: true, nonce })));
    stranger.set(protect(whoamiMcp(), options(strict.mcpUrl, { required: true, nonce: { secret: 'another-secret' } })));
    key = await proofKey();
    bound = await mint(open.mcpUrl, key.jkt);
  });
  afterAll(async () => {
    await Promise.all([open, strict, twin, stranger].map((slot) => slot?.close()));
    await as?.close();
  });

  const mint = (audience: string, jkt?: string) =>
    as.mintToken({ subject: 'alice', scopes: ['mcp:tools'], audience, ...(jkt ? { claims: { cnf: { jkt } } } : {}) });

  /** Sends `bound` with `dpop` and expects 401 invalid_dpop_proof whose description matches `reason`. */
  async function refused(dpop: string, reason: RegExp, url = open.mcpUrl): Promise<void> {
    const response = await send(url, `DPoP ${bound}`, dpop);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({
      error: 'invalid_dpop_proof',
      error_description: expect.stringMatching(reason),
    });
    // The error is on the DPoP challenge; the Bearer one stays a plain offer.
    const challenge = response.headers.get('www-authenticate')!;
    expect(challenge).toMatch(/^Bearer scope="mcp:tools", resource_metadata="[^"]+", DPoP error="invalid_dpop_proof"/);
  }

  it('accepts a complete proof, and a proof issued up to clockTolerance (5 s) ahead or maxAgeSeconds (60 s) ago', async () => {
    expect((await send(open.mcpUrl, `DPoP ${bound}`, await proof(key, open.mcpUrl, bound))).status).toBe(200);
    const now = Math.floor(Date.now() / 1000);
    for (const iat of [now + 3, now - 55]) {
      const response = await send(
        open.mcpUrl,
        `DPoP ${bound}`,
        await proof(key, open.mcpUrl, bound, { claims: { iat } }),
      );
      expect(response.status).toBe(200);
    }
  });

  it('remembers jti in memory by default: of 16 simultaneous presentations of one proof, exactly one runs', async () => {
    const once = await proof(key, open.mcpUrl, bound);
    const answers = await Promise.all(
      Array.from({ length: 16 }, () => send(open.mcpUrl, `DPoP ${bound}`, once).then((r) => r.status)),
    );
    expect(answers.sort()).toEqual([200, ...Array(15).fill(401)]);
  });

  it('refuses a proof issued too far ahead or too long ago', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(await proof(key, open.mcpUrl, bound, { claims: { iat: now + 30 } }), /iat/);
    await refused(await proof(key, open.mcpUrl, bound, { claims: { iat: now - 90 } }), /iat/);
  });

  it('refuses a proof whose typ is not dpop+jwt', async () => {
    await refused(await proof(key, open.mcpUrl, bound, { header: { typ: 'JWT' } }), /typ/);
  });

  it('refuses an algorithm that is not allowed, and a symmetric one', async () => {
    const es384 = await proofKey('ES384');
    const token = await mint(open.mcpUrl, es384.jkt);
    const response = await send(open.mcpUrl, `DPoP ${token}`, await proof(es384, open.mcpUrl, token));
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({
      error: 'invalid_dpop_proof',
      error_description: 'the proof algorithm is not one of ES256, RS256, PS256, EdDSA',
    });
    const secret = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
    const hmac = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: open.mcpUrl, iat: Date.now() / 1000 })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'AAAA' } as never })
      .sign(secret);
    await refused(hmac, /algorithm is not one of/);
  });

  it('refuses a proof whose signature does not verify, or whose jwk header is a private key', async () => {
    const good = await proof(key, open.mcpUrl, bound);
    const [header, payload, signature] = good.split('.');
    const flipped = `${signature!.startsWith('A') ? 'B' : 'A'}${signature!.slice(1)}`;
    await refused(`${header}.${payload}.${flipped}`, /signature is invalid/);
    // The same claims signed by another key, claiming the bound key in its header.
    const other = await proofKey();
    await refused(await proof(other, open.mcpUrl, bound, { header: { jwk: key.jwk } }), /signature is invalid/);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(privateKey);
    await refused(
      await proof({ ...key, privateKey, jwk: privateJwk }, open.mcpUrl, bound, { header: { jwk: privateJwk } }),
      /malformed/,
    );
  });

  it('refuses a proof without jti, and two proofs in one header', async () => {
    await refused(await proof(key, open.mcpUrl, bound, { claims: { jti: undefined } }), /jti/);
    const two = `${await proof(key, open.mcpUrl, bound)}, ${await proof(key, open.mcpUrl, bound)}`;
    await refused(two, /exactly one/);
  });

  it('compares htu without query and fragment', async () => {
    const withQuery = await proof(key, `${open.mcpUrl}?session=1#top`, bound);
    expect((await send(open.mcpUrl, `DPoP ${bound}`, withQuery)).status).toBe(200);
    const toQuery = await send(`${open.mcpUrl}?x=1`, `DPoP ${bound}`, await proof(key, open.mcpUrl, bound));
    expect(toQuery.status).toBe(200);
    await refused(await proof(key, `${open.mcpUrl}/other`, bound), /htu/);
  });

  it('refuses a DPoP presentation of an unbound token, with the error on the DPoP challenge', async () => {
    const unbound = await mint(open.mcpUrl);
    const response = await send(open.mcpUrl, `DPoP ${unbound}`, await proof(key, open.mcpUrl, unbound));
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({
      error: 'invalid_token',
      error_description: expect.stringMatching(/not DPoP-bound/),
    });
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer scope="mcp:tools", resource_metadata="${open.url}/.well-known/oauth-protected-resource/mcp", ` +
        'DPoP error="invalid_token", error_description="the token is not DPoP-bound: present it as Bearer", ' +
        'algs="ES256 RS256 PS256 EdDSA"',
    );
    // The unbound token as Bearer runs; a bad Bearer token gets its error on the Bearer challenge.
    expect((await send(open.mcpUrl, `Bearer ${unbound}`)).status).toBe(200);
    const bad = await send(open.mcpUrl, 'Bearer not-a-token');
    expect(bad.headers.get('www-authenticate')).toMatch(
      /^Bearer error="invalid_token", error_description="[^"]+", scope="mcp:tools", resource_metadata="[^"]+", DPoP algs="ES256 RS256 PS256 EdDSA"$/,
    );
  });

  it('required: true refuses a valid Bearer token and offers only DPoP', async () => {
    const unbound = await mint(strict.mcpUrl);
    const response = await send(strict.mcpUrl, `Bearer ${unbound}`);
    expect(response.status).toBe(401);
    const challenge = response.headers.get('www-authenticate')!;
    expect(challenge).toMatch(/^DPoP error="invalid_token"/);
    expect(challenge).toContain('scope="mcp:tools"');
    expect(challenge).not.toContain('Bearer');
    expect(await response.json()).toMatchObject({ error_description: expect.stringMatching(/only DPoP-bound/) });
  });

  it('nonces: required, accepted from an instance with the same secret, refused from another; every answer has a fresh one', async () => {
    const token = await mint(strict.mcpUrl, key.jkt);
    const withoutNonce = await send(strict.mcpUrl, `DPoP ${token}`, await proof(key, strict.mcpUrl, token));
    expect(withoutNonce.status).toBe(401);
    expect(withoutNonce.headers.get('www-authenticate')).toMatch(/^DPoP error="use_dpop_nonce"/);
    const fromTwin = (await send(twin.mcpUrl, 'Bearer x')).headers.get('dpop-nonce')!;
    expect(fromTwin).toBeTruthy();
    const withNonce = async (nonce: string) =>
      send(strict.mcpUrl, `DPoP ${token}`, await proof(key, strict.mcpUrl, token, { claims: { nonce } }));
    const ok = await withNonce(fromTwin);
    expect(ok.status).toBe(200);
    // The success carries a nonce too, and it works for the next request.
    const next = ok.headers.get('dpop-nonce')!;
    expect(next).toBeTruthy();
    expect((await withNonce(next)).status).toBe(200);

    const fromStranger = (await send(stranger.mcpUrl, 'Bearer x')).headers.get('dpop-nonce')!;
    const foreign = await withNonce(fromStranger);
    expect(foreign.status).toBe(401);
    expect(foreign.headers.get('www-authenticate')).toMatch(/^DPoP error="use_dpop_nonce"/);
    expect(foreign.headers.get('dpop-nonce')).toBeTruthy();
  });
});
