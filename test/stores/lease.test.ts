// The lease capability of the shared stores, on the real Redis and PostgreSQL: one holder at a time across
// separate connections (as separate machines would have), expiry on the store's clock, release by the owner only.
import { randomUUID } from 'node:crypto';
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import { afterAll, describe, expect, it } from 'vitest';
import {
  encryptedStore,
  type GatehouseStore,
  generateEncryptionKey,
  type LeaseStore,
  leasesOf,
  memoryStore,
  postgresStore,
  redisStore,
  withLeases,
} from '../../src/storage/index.js';
import { POSTGRES_URL, REDIS_URL, removeFromServices, sleep, uniqueId } from '../storage/helpers.js';

const run = uniqueId('lease');
const opened: GatehouseStore[] = [];
type LeasingStore = GatehouseStore & LeaseStore;

/** Each call opens its own connection (or pool): the stores of several processes on several machines. */
const backends: Array<[string, () => LeasingStore]> = [
  ['redis', () => track(redisStore(REDIS_URL, { prefix: `gatehouse-test:${run}:`, namespace: 'tokens' }))],
  [
    'postgres',
    () => track(postgresStore(POSTGRES_URL, { table: `${run}_kv`, namespace: 'tokens', poolConfig: { max: 2 } })),
  ],
];

function track<T extends GatehouseStore>(store: T): T {
  opened.push(store);
  return store;
}

afterAll(async () => {
  await Promise.all(opened.map((store) => store.close()));
  await removeFromServices({ redisPrefix: `gatehouse-test:${run}:`, tables: [`${run}_kv`, `${run}_kv_lease`] });
});

describe.each(backends)('leases in %s', (_name, open) => {
  it('one holder at a time: of 12 owners on 4 connections racing for a lease, exactly one gets it', async () => {
    const stores = [open(), open(), open(), open()];
    for (let round = 0; round < 5; round++) {
      const key = `race-${round}-${randomUUID()}`;
      const owners = Array.from({ length: 12 }, (_, i) => `owner-${i}`);
      const won = await Promise.all(owners.map((owner, i) => stores[i % 4]!.acquireLease(key, 10_000, owner)));
      expect(won.filter(Boolean)).toHaveLength(1);
      // Not even the holder takes it twice: leases do not nest.
      const holder = owners[won.indexOf(true)]!;
      expect(await stores[1]!.acquireLease(key, 10_000, holder)).toBe(false);
    }
  });

  it('a lease expires after its ttl on the store clock, so a dead holder blocks others only that long', async () => {
    const [a, b] = [open(), open()];
    const key = `expiry-${randomUUID()}`;
    expect(await a.acquireLease(key, 1500, 'dead-holder')).toBe(true);
    expect(await b.acquireLease(key, 1500, 'waiter')).toBe(false);
    await sleep(1700);
    expect(await b.acquireLease(key, 30_000, 'waiter')).toBe(true);
    // The holder that came back late cannot release what is now another's.
    expect(await a.releaseLease(key, 'dead-holder')).toBe(false);
    expect(await a.acquireLease(key, 30_000, 'third')).toBe(false);
  });

  it('only the owner releases: another owner’s release changes nothing, the owner’s frees it at once', async () => {
    const [a, b] = [open(), open()];
    const key = `release-${randomUUID()}`;
    expect(await a.acquireLease(key, 30_000, 'owner-a')).toBe(true);
    expect(await b.releaseLease(key, 'owner-b')).toBe(false);
    expect(await b.acquireLease(key, 30_000, 'owner-b')).toBe(false);
    expect(await a.releaseLease(key, 'owner-a')).toBe(true);
    expect(await a.releaseLease(key, 'owner-a')).toBe(false);
    expect(await b.acquireLease(key, 30_000, 'owner-b')).toBe(true);
  });

  it('leases live beside the entries: a lease named like an entry neither shows in get() nor is touched by it', async () => {
    const store = open();
    const key = `entry-${randomUUID()}`;
    await store.set(key, { tokens: 'kept' });
    expect(await store.acquireLease(key, 30_000, 'owner')).toBe(true);
    expect(await store.get(key)).toEqual({ tokens: 'kept' });
    await store.delete(key);
    await store.clear();
    expect(await store.acquireLease(key, 30_000, 'other')).toBe(false);
    expect(await store.releaseLease(key, 'owner')).toBe(true);
  });

  it('encryptedStore() keeps the lease of the store it wraps', async () => {
    const encrypted = encryptedStore(open(), { keys: [generateEncryptionKey()] });
    const plain = open();
    const key = `encrypted-${randomUUID()}`;
    expect(await encrypted.acquireLease!(key, 30_000, 'through-encryption')).toBe(true);
    expect(await plain.acquireLease(key, 30_000, 'plain')).toBe(false);
    expect(await encrypted.releaseLease!(key, 'through-encryption')).toBe(true);
  });

  it('refuses a lease without a lifetime', async () => {
    await expect(open().acquireLease(`no-ttl-${randomUUID()}`, 0, 'owner')).rejects.toThrow(/positive lifetime/);
  });
});

describe('stores without a native lease', () => {
  it('memory stores and Keyv instances have none (the client uses its lock file); withLeases() opts a Keyv in', async () => {
    expect(leasesOf(memoryStore())).toBeUndefined();
    const keyv = new Keyv(new KeyvRedis(REDIS_URL), { namespace: `gatehouse-test:${run}:keyv` });
    try {
      expect(leasesOf(keyv)).toBeUndefined();
      const leases = track(redisStore(REDIS_URL, { prefix: `gatehouse-test:${run}:`, namespace: 'keyv' }));
      const store = withLeases(keyv, leases);
      expect(leasesOf(store)).toBeDefined();
      await store.set('record', { a: 1 });
      expect(await store.get('record')).toEqual({ a: 1 });
      expect(await store.acquireLease('record', 30_000, 'keyv-owner')).toBe(true);
      expect(await leases.acquireLease('record', 30_000, 'other')).toBe(false);
      expect(await store.releaseLease('record', 'keyv-owner')).toBe(true);
    } finally {
      await keyv.disconnect();
    }
  });
});
