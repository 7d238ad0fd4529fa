// docs/server.md "DPoP": a proof's jti is remembered in `replayStore`, shared by every instance, so a proof replayed
// to another instance is refused; with redisStore() and postgresStore() two simultaneous presentations of one proof
// cannot both pass. Tested against the real stores, and against private ones that are stopped mid-test.
import { createHash, randomUUID } from 'node:crypto';
import KeyvRedis from '@keyv/redis';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { postgresStore, redisStore } from '../../src/storage/index.js';
import { type KeyValueStore, toKeyValueStore } from '../../src/storage/types.js';
import {
  startTestAuthorizationServer,
  type TestAuthorizationServer,
} from '../../src/testing/test-authorization-server.js';
import { type Slot, startSlot } from '../helpers/serve-stack.js';
import { POSTGRES_URL, REDIS_URL, uniqueId } from '../storage/helpers.js';
import { type PrivateStore, startPrivatePostgres, startPrivateRedis } from '../stores/services.js';
import { sendToolsList, whoamiMcp } from './helpers.js';

const run = uniqueId('dpop').replace(/-/g, '_');

type OpenStore = (url: string) => KeyValueStore & { close(): Promise<unknown> };
const backends: Array<[string, OpenStore]> = [
  ['redisStore()', (url) => redisStore(url, { prefix: `gatehouse-test:${run}:`, namespace: 'dpop' })],
  ['postgresStore()', (url) => postgresStore(url, { table: `${run}_pg`, namespace: 'dpop' })],
];

/** Two protect()ed instances of one resource, each with its own connection to the replay store at `url`. */
async function twoInstances(as: TestAuthorizationServer, open: OpenStore, url: string) {
  const slots = await Promise.all([startSlot(), startSlot()]);
  const stores = slots.map(() => open(url));
  const resource = slots[0]!.mcpUrl;
  slots.forEach((slot, i) => {
    slot.set(
      protect(whoamiMcp(), {
        resource,
        authorizationServers: [as.issuer],
        verifier: jwtVerifier({ issuer: as.issuer }),
        dpop: { replayStore: stores[i]! },
      }),
    );
  });
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = await exportJWK(publicKey);
  const token = await as.mintToken({ audience: resource, claims: { cnf: { jkt: await calculateJwkThumbprint(jwk) } } });
  return {
    slots,
    /** A fresh proof for `token`, valid at both instances (htu is the resource's public URL). */
    proof: () =>
      new SignJWT({
        jti: randomUUID(),
        htm: 'POST',
        htu: resource,
        iat: Math.floor(Date.now() / 1000),
        ath: createHash('sha256').update(token).digest('base64url'),
      })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(privateKey),
    send: (slot: Slot, proof: string) => sendToolsList(slot.mcpUrl, `DPoP ${token}`, proof),
    close: async () => {
      await Promise.all(slots.map((slot) => slot.close()));
      await Promise.all(stores.map((store) => store.close()));
    },
  };
}

let as: TestAuthorizationServer;
beforeAll(async () => {
  as = await startTestAuthorizationServer();
});
afterAll(async () => {
  await as?.close();
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${run}_pg, ${run}_pg_lease`);
  await client.end();
});

describe.each(backends)('the DPoP replay store on %s', (_name, open) => {
  const url = open === backends[0]![1] ? REDIS_URL : POSTGRES_URL;
  let pair: Awaited<ReturnType<typeof twoInstances>>;
  beforeAll(async () => {
    pair = await twoInstances(as, open, url);
  });
  afterAll(() => pair?.close());

  it('refuses a proof replayed to the other instance', async () => {
    const proof = await pair.proof();
    expect((await pair.send(pair.slots[0]!, proof)).status).toBe(200);
    const replayed = await pair.send(pair.slots[1]!, proof);
    expect(replayed.status).toBe(401);
    expect(await replayed.json()).toEqual({
      error: 'invalid_dpop_proof',
      error_description: 'this DPoP proof was already used',
    });
  });

  it('of 16 simultaneous presentations of one proof to both instances, exactly one runs', async () => {
    for (let round = 0; round < 3; round++) {
      const proof = await pair.proof();
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) => pair.send(pair.slots[i % 2]!, proof).then((r) => r.status)),
      );
      expect(answers.filter((status) => status === 200)).toHaveLength(1);
      expect(answers.filter((status) => status === 401)).toHaveLength(15);
    }
  });
});

// A Keyv instance has no atomic insert: instances may race for one store round trip (as the docs say), but one
// instance never lets the same proof through twice.
describe('the DPoP replay store on a Keyv instance (Redis)', () => {
  let pair: Awaited<ReturnType<typeof twoInstances>>;
  beforeAll(async () => {
    const keyv = (url: string) => {
      const store = new Keyv(new KeyvRedis(url), { namespace: `gatehouse-test:${run}:keyv` });
      return Object.assign(toKeyValueStore(store), { close: () => store.disconnect() });
    };
    pair = await twoInstances(as, keyv, REDIS_URL);
  });
  afterAll(() => pair?.close());

  it('of 16 simultaneous presentations of one proof to one instance, exactly one runs', async () => {
    for (let round = 0; round < 3; round++) {
      const proof = await pair.proof();
      const answers = await Promise.all(
        Array.from({ length: 16 }, () => pair.send(pair.slots[0]!, proof).then((r) => r.status)),
      );
      expect(answers.sort()).toEqual([200, ...Array(15).fill(401)]);
    }
  });
});

describe.each([
  ['Redis', startPrivateRedis, 0],
  ['PostgreSQL', startPrivatePostgres, 1],
] as const)('when the replay store (%s) is down', (_name, start, backend) => {
  let store: PrivateStore;
  let pair: Awaited<ReturnType<typeof twoInstances>>;
  beforeAll(async () => {
    store = await start();
    pair = await twoInstances(as, backends[backend]![1], store.url);
  });
  afterAll(async () => {
    await pair?.close();
    await store?.destroy();
  });

  it('answers 503 temporarily_unavailable, never runs the call, and remembers proofs across the outage', async () => {
    const before = await pair.proof();
    expect((await pair.send(pair.slots[0]!, before)).status).toBe(200);
    await store.stop();
    const down = await pair.send(pair.slots[1]!, await pair.proof());
    expect(down.status).toBe(503);
    expect(down.headers.get('www-authenticate')).toBeNull();
    expect(await down.json()).toMatchObject({ error: 'temporarily_unavailable' });
    await store.start();
    // The store reconnects on its own; the proof used before the outage is still known.
    let fresh = 0;
    for (let i = 0; i < 100 && fresh !== 200; i++) {
      fresh = (await pair.send(pair.slots[1]!, await pair.proof())).status;
      if (fresh !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(fresh).toBe(200);
    expect((await pair.send(pair.slots[1]!, before)).status).toBe(401);
  });
});

describe('when the replay store (Redis) stalls', () => {
  let store: Awaited<ReturnType<typeof startPrivateRedis>>;
  let pair: Awaited<ReturnType<typeof twoInstances>>;
  beforeAll(async () => {
    store = await startPrivateRedis();
    pair = await twoInstances(as, backends[0]![1], store.url);
  });
  afterAll(async () => {
    await pair?.close();
    await store?.destroy();
  });

  it('answers 503 within the 1.5 s store deadline, and serves again once it answers', async () => {
    store.pause();
    try {
      const started = Date.now();
      const stalled = await pair.send(pair.slots[0]!, await pair.proof());
      expect(stalled.status).toBe(503);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      store.resume();
    }
    expect((await pair.send(pair.slots[0]!, await pair.proof())).status).toBe(200);
  });
});
