// docs/server.md "Verifiers": jwtVerifier accepts every asymmetric algorithm by default (RS256, PS256, ES256, EdDSA),
// never `none` or HMAC, and refetches the issuer's keys for an unknown `kid` at most every `jwksCooldown` seconds.
// Through protect() over HTTP, against an issuer of our own whose keys and requests we control.
import { randomUUID } from 'node:crypto';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBearerChallenge } from '../../src/oauth/www-authenticate.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import { type Slot, startSlot } from '../helpers/serve-stack.js';
import { rpc, whoamiMcp } from './helpers.js';

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey | Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  publicJwk: JWK;
  publicPem: string;
}

async function signingKey(alg: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg}-${randomUUID()}`;
  return {
    kid,
    alg,
    privateKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
    publicPem: await exportSPKI(publicKey),
  };
}

describe('jwtVerifier algorithms and key refetching, through protect()', () => {
  let issuer: RunningServer;
  let published: JWK[] = [];
  let jwksRequests = 0;
  const slots: Slot[] = [];
  const keys: Record<string, SigningKey> = {};

  beforeAll(async () => {
    for (const alg of ['RS256', 'PS256', 'ES256', 'EdDSA']) keys[alg] = await signingKey(alg);
    published = Object.values(keys).map((key) => key.publicJwk);
    issuer = await listen((req, res) => {
      if (req.url === '/jwks') jwksRequests++;
      res.writeHead(req.url === '/jwks' ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(req.url === '/jwks' ? { keys: published } : {}));
    });
  });
  afterAll(async () => {
    await Promise.all(slots.map((slot) => slot.close()));
    await issuer?.close();
  });

  /** A protected SDK server trusting our issuer; `cooldown` is jwksCooldown (default when undefined). */
  async function server(cooldown?: number): Promise<string> {
    const slot = await startSlot();
    slots.push(slot);
    slot.set(
      protect(whoamiMcp(), {
        resource: slot.mcpUrl,
        authorizationServers: [issuer.url],
        verifier: jwtVerifier({
          issuer: issuer.url,
          jwksUri: `${issuer.url}/jwks`,
          ...(cooldown === undefined ? {} : { jwksCooldown: cooldown }),
        }),
      }),
    );
    return slot.mcpUrl;
  }

  const claims = (audience: string) => ({
    sub: 'alice',
    client_id: 'app',
    scope: 'mcp:tools',
    aud: audience,
    iss: issuer.url,
    jti: randomUUID(),
  });
  const mint = (key: SigningKey, audience: string) =>
    new SignJWT(claims(audience))
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(key.privateKey);

  async function refused(url: string, token: string): Promise<string | undefined> {
    const response = await rpc(url, 'tools/list', {}, token);
    expect(response.status).toBe(401);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['error']).toBe('invalid_token');
    return challenge?.params['error_description'];
  }

  it('accepts RS256, PS256, ES256 and EdDSA tokens without configuration', async () => {
    const url = await server();
    for (const key of Object.values(keys)) {
      expect((await rpc(url, 'tools/list', {}, await mint(key, url))).status, key.alg).toBe(200);
    }
  });

  it('refuses an unsigned token (alg none), an HMAC token keyed by a published symmetric key, and one keyed with the public key', async () => {
    const url = await server();
    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const body = { ...claims(url), iat: now, exp: now + 300 };
    const unsigned = `${b64({ alg: 'none', typ: 'at+jwt', kid: keys['RS256']!.kid })}.${b64(body)}.`;
    expect(await refused(url, unsigned)).toBeTruthy();
    // An issuer that (wrongly) publishes a symmetric key: anyone who reads its JWKS could mint HS256 tokens.
    const hmac = {
      kty: 'oct',
      kid: 'shared-hmac',
      k: Buffer.from('a-symmetric-key-everyone-can-read').toString('base64url'),
    };
    published = [...published, hmac];
    const forged = await new SignJWT(body)
      .setProtectedHeader({ alg: 'HS256', kid: hmac.kid, typ: 'at+jwt' })
      .sign(Buffer.from(hmac.k, 'base64url'));
    expect(await refused(url, forged)).toBeTruthy();
    published = published.filter((key) => key.kid !== hmac.kid);
    const rsa = keys['RS256']!;
    const confused = await new SignJWT(body)
      .setProtectedHeader({ alg: 'HS256', kid: rsa.kid, typ: 'at+jwt' })
      .sign(new TextEncoder().encode(rsa.publicPem));
    expect(await refused(url, confused)).toBeTruthy();
    // The same claims signed properly pass: the refusals are about the algorithm.
    expect((await rpc(url, 'tools/list', {}, await mint(rsa, url))).status).toBe(200);
  });

  it('refetches the keys for an unknown kid at most every jwksCooldown seconds', async () => {
    const slow = await server(); // default cooldown: 30 s
    const fast = await server(1);
    for (const url of [slow, fast])
      expect((await rpc(url, 'tools/list', {}, await mint(keys['ES256']!, url))).status).toBe(200);
    const rotated = await signingKey('ES256');
    published = [...published, rotated.publicJwk];
    const before = jwksRequests;
    // Within the cooldown an unknown kid is refused without asking the issuer again, however often it comes.
    for (let i = 0; i < 3; i++) await refused(slow, await mint(rotated, slow));
    expect(jwksRequests).toBe(before);
    // Once the cooldown has passed, one refetch finds the new key.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await rpc(fast, 'tools/list', {}, await mint(rotated, fast))).status).toBe(200);
    expect(jwksRequests).toBe(before + 1);
    await refused(slow, await mint(rotated, slow));
    expect(jwksRequests).toBe(before + 1);
  });
});
