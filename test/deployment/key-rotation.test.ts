import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { token } from '../authorization-server/helpers.js';
import { type Cluster, INTROSPECTOR, RESOURCE, startCluster } from './cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SERVICE = { id: 'rotation-service', secret: 'rotation-service-secret-0123456789' };
/** Every token this cluster signs lives 4 s, so a retired key leaves the JWKS about 9 s after it stops signing. */
const TOKEN_SECONDS = 4;
const ACTIVATE_IN = 6;

const jwksKids = async (url: string) =>
  ((await (await fetch(`${url}/jwks`)).json()) as { keys: Array<{ kid: string; alg: string }> }).keys;

describe('gatehouse admin keys rotate on three instances sharing Redis', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster('redis', {
      config: {
        clients: [
          {
            client_id: INTROSPECTOR.id,
            client_secret: INTROSPECTOR.secret,
            token_endpoint_auth_method: 'client_secret_basic',
            grant_types: [],
            response_types: [],
            redirect_uris: [],
          },
          {
            client_id: SERVICE.id,
            client_secret: SERVICE.secret,
            token_endpoint_auth_method: 'client_secret_basic',
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
          },
        ],
        keys: { refreshSeconds: 1 },
        providerConfiguration: { ttl: { AccessToken: TOKEN_SECONDS, ClientCredentials: TOKEN_SECONDS, IdToken: 4 } },
      },
    });
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
  });

  const issue = async () => {
    const answer = await token(
      cluster,
      { grant_type: 'client_credentials', resource: RESOURCE, scope: 'mcp:tools' },
      SERVICE,
    );
    if (answer.status !== 200)
      throw new Error(`token request answered ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body['access_token'] as string;
  };

  it('publishes the new keys everywhere first, signs with them from their activation on every instance, accepts every token throughout, then drops the old keys', async () => {
    // A resource server that fetched the JWKS before the rotation; it fetches again on an unknown kid.
    const verifier = jwtVerifier({ issuer: cluster.url, audience: RESOURCE, jwksCooldown: 1, cacheTtl: 0 });
    const first = await issue();
    await verifier.verify(first);
    const oldKid = decodeProtectedHeader(first).kid!;

    const rotated = await cluster.admin(['keys', 'rotate', '--activate-in', String(ACTIVATE_IN)]);
    expect(rotated.status, rotated.stderr).toBe(0);
    const { rotated: newKids, activates_at } = JSON.parse(rotated.stdout) as {
      rotated: string[];
      activates_at: string;
    };
    const activatesAt = Date.parse(activates_at);
    expect(newKids).toHaveLength(2);

    // A request flood across the whole switch: every token issued and accepted by the warm verifier.
    const issued: Array<{ at: number; kid: string }> = [];
    const failures: string[] = [];
    let stop = false;
    const flood = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const at = Date.now();
        try {
          const value = await issue();
          await verifier.verify(value);
          issued.push({ at, kid: decodeProtectedHeader(value).kid! });
        } catch (error) {
          failures.push(String(error));
        }
      }
    });

    // Within a few seconds of the rotation every instance publishes the new keys, beside the old one.
    const published = Date.now() + 3000;
    for (const instance of cluster.instances) {
      for (;;) {
        const kids = (await jwksKids(instance.url)).map((k) => k.kid);
        if (newKids.every((kid) => kids.includes(kid))) {
          expect(kids).toContain(oldKid);
          break;
        }
        expect(Date.now(), `instance ${instance.url} publishes ${kids}`).toBeLessThan(published);
        await sleep(100);
      }
    }
    expect(Date.now()).toBeLessThan(activatesAt);

    await sleep(activatesAt + 2500 - Date.now());
    stop = true;
    await Promise.all(flood);
    expect(failures).toEqual([]);
    // Issued before activation (with a second's margin for the clocks): the old key. After: a new one, on every instance.
    const before = issued.filter((t) => t.at < activatesAt - 1000);
    const after = issued.filter((t) => t.at > activatesAt + 1000);
    expect(before.length).toBeGreaterThan(10);
    expect(after.length).toBeGreaterThan(10);
    expect(new Set(before.map((t) => t.kid))).toEqual(new Set([oldKid]));
    expect(new Set(after.map((t) => t.kid)).size).toBe(1);
    expect(newKids).toContain(after[0]!.kid);

    const list = await cluster.admin(['keys', 'list', '--json']);
    expect(list.status, list.stderr).toBe(0);
    const rows = list.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { kid: string; state: string });
    const states = Object.fromEntries(rows.map((r) => [r.kid, r.state]));
    expect(states[oldKid]).toBe('retiring');
    for (const kid of newKids) expect(states[kid]).toBe('active');

    // The old key's last token has expired: every instance stops publishing it.
    const dropBy = activatesAt + (TOKEN_SECONDS + 5) * 1000 + 3000;
    for (const instance of cluster.instances) {
      for (;;) {
        const kids = (await jwksKids(instance.url)).map((k) => k.kid);
        if (!kids.includes(oldKid)) {
          expect(Date.now()).toBeGreaterThan(activatesAt + TOKEN_SECONDS * 1000);
          expect(newKids.every((kid) => kids.includes(kid))).toBe(true);
          break;
        }
        expect(Date.now(), `instance ${instance.url} still publishes ${oldKid}`).toBeLessThan(dropBy);
        await sleep(200);
      }
    }
  }, 90_000);
});

describe('scheduled rotation on three instances sharing PostgreSQL', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    // Every instance checks each second; a new generation is due 2 s after the newest one activates.
    cluster = await startCluster('postgres', {
      config: { keys: { rotateEvery: 32, activateIn: 30, refreshSeconds: 1 }, logLevel: 'info' },
    });
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
  });

  const storedKeys = async () => {
    const list = await cluster.admin(['keys', 'list', '--json']);
    expect(list.status, list.stderr).toBe(0);
    return list.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { kid: string; state: string });
  };

  it('writes one scheduled generation when it is due, published by every instance', async () => {
    const rotated = await cluster.admin(['keys', 'rotate', '--activate-in', '2']);
    expect(rotated.status, rotated.stderr).toBe(0);
    const activatesAt = Date.parse((JSON.parse(rotated.stdout) as { activates_at: string }).activates_at);
    // Due at activation + 2 s on all three; give them three more seconds of ticks to race.
    await sleep(activatesAt + 5000 - Date.now());
    const keys = await storedKeys();
    // The first generation, the one rotated by hand and exactly one scheduled generation: 3 × (RS256 + ES256).
    expect(keys).toHaveLength(6);
    expect(keys.filter((k) => k.state === 'pending')).toHaveLength(2);
    // One instance wrote it (the others lost the claim in the store).
    const writers = cluster.instances.filter((i) => i.output().includes('signing keys rotated (scheduled)'));
    expect(writers).toHaveLength(1);
    await sleep(1500);
    for (const instance of cluster.instances) {
      const kids = (await jwksKids(instance.url)).map((k) => k.kid).sort();
      expect(kids).toEqual(keys.map((k) => k.kid).sort());
    }
  }, 60_000);
});
