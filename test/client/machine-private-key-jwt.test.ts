// docs/login.md, "Machines: MachineAuth": `privateKey` authenticates a client_credentials grant with private_key_jwt
// (RFC 7523 §2.2). A MachineAuth through Client against `gatehouse serve` (as a process) with a client registered by
// its public key: the call succeeds; the client assertion it sent names the client as iss and sub, the
// authorization server's issuer as aud, carries a fresh jti and a short exp; the same assertion sent again is
// refused (oidc-provider's replay detection), and a key the server does not know gets nothing.
import { decodeJwt, exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, Client, MachineAuth } from '../../src/client/index.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type Slot, serveWhoami, startSlot } from '../helpers/serve-stack.js';

const CLIENT_ID = 'signed-job';
let as: ServeProcess;
let mcp: Slot;
let privateKey: string;
let otherKey: string;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  privateKey = await exportPKCS8(pair.privateKey);
  otherKey = await exportPKCS8((await generateKeyPair('ES256', { extractable: true })).privateKey);
  const jwk = { ...(await exportJWK(pair.publicKey)), alg: 'ES256', use: 'sig', kid: 'job-1' };
  mcp = await startSlot();
  as = await startServeProcess(['--resource', `${mcp.mcpUrl}=mcp:tools`], {
    clients: [
      {
        client_id: CLIENT_ID,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [jwk] },
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      },
    ],
  });
  serveWhoami(mcp, as.url);
}, 60_000);
afterAll(async () => {
  await Promise.all([as?.close(), mcp?.close()]);
});

/** A fetch that records the body of every token request, to read the assertion the client sent. */
function recordingFetch(bodies: URLSearchParams[]): typeof fetch {
  return async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url.endsWith('/token') && typeof init?.body === 'string') bodies.push(new URLSearchParams(init.body));
    else if (url.endsWith('/token') && init?.body instanceof URLSearchParams)
      bodies.push(new URLSearchParams(init.body));
    return fetch(input, init);
  };
}

describe('MachineAuth with privateKey (private_key_jwt)', () => {
  it('gets a token by client_credentials, with an assertion naming the client, the issuer, a fresh jti, a short exp', async () => {
    const bodies: URLSearchParams[] = [];
    const auth = new MachineAuth({
      mcpUrl: mcp.mcpUrl,
      clientId: CLIENT_ID,
      privateKey,
      algorithm: 'ES256',
      fetch: recordingFetch(bodies),
    });
    await using client = new Client(mcp.mcpUrl, { auth });
    const { data } = await client.callTool<{ clientId: string }>('whoami');
    expect(data.clientId).toBe(CLIENT_ID);

    expect(bodies).toHaveLength(1);
    const body = bodies[0]!;
    expect(body.get('grant_type')).toBe('client_credentials');
    expect(body.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    expect(body.get('client_secret')).toBeNull();
    const assertion = body.get('client_assertion')!;
    const claims = decodeJwt(assertion);
    const now = Math.floor(Date.now() / 1000);
    expect(claims.iss).toBe(CLIENT_ID);
    expect(claims.sub).toBe(CLIENT_ID);
    expect(claims.aud).toBe(as.url); // the issuer (RFC 7523 §3), not the token endpoint's URL
    expect(claims.jti).toMatch(/^.{16,}$/);
    expect(claims.exp).toBeGreaterThan(now);
    expect(claims.exp! - now).toBeLessThanOrEqual(600);

    // The same assertion again: refused, whatever else the request says.
    const replay = await fetch(`${as.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect(replay.status).toBe(401);
    expect(await replay.json()).toMatchObject({ error: 'invalid_client' });

    // A new token request signs a new assertion, with another jti, which the server accepts.
    await auth.storage.delete(mcp.mcpUrl);
    await client.callTool('whoami');
    expect(bodies).toHaveLength(2);
    const second = decodeJwt(bodies[1]!.get('client_assertion')!);
    expect(second.jti).not.toBe(claims.jti);
  });

  it('a key the authorization server does not know: AuthenticationError, no call goes through', async () => {
    const auth = new MachineAuth({ mcpUrl: mcp.mcpUrl, clientId: CLIENT_ID, privateKey: otherKey, algorithm: 'ES256' });
    await using client = new Client(mcp.mcpUrl, { auth });
    const error = await client.callTool('whoami').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error).toMatchObject({ code: 'ERR_TOKEN_REQUEST' });
    expect(String((error as Error).message)).toMatch(/invalid_client/);
  });
});
